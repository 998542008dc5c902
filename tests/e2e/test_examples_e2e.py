"""The example DAGs, unchanged, under real Airflow 3 (`airflow dags test`) against the real control plane.

As `kpo-async demo` does for the embedded cluster: a throw-away AIRFLOW_HOME (SQLite), the
`kubernetes_default` and `remote_k8s` connections and the `remote_kubeconfig` / `remote_context` variables
pointed at the real API server with the operator's least-privilege ServiceAccount (operator.kubeconfig,
namespace kpo-async-e2e). kwok runs no process: tools/kwok/podfiles.py emulates each pod's `sh -c` /
`bash -cx` script (output lines, exit code, run time, /airflow/xcom/return.json), see
docs/real-control-plane.md.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import AIRFLOW_LAUNCHER, ON_REAL_NODE, REPO, Cluster, live_pods

pytestmark = pytest.mark.e2e

CONTEXT = "system:serviceaccount:kpo-async-e2e:kpo-async"  # the context in operator.kubeconfig


@pytest.fixture(scope="module")
def airflow_env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not ON_REAL_NODE:
        # The DAGs' pods have no kwok annotations: without podfiles' shell emulation they would do nothing.
        states = re.findall(
            r"shell emulation (enabled|disabled)", (cluster.dir / "logs" / "podfiles.log").read_text()
        )
        assert states and states[-1] == "enabled", (
            "tools/kwok/podfiles.py runs without shell emulation: see its log"
        )
    home = tmp_path_factory.mktemp("airflow-home")
    kubeconfig = str(cluster.operator_kubeconfig)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
                {
                    "conn_type": "kubernetes",
                    "extra": {"kube_config_path": kubeconfig, "namespace": cluster.namespace},
                }
            ),
            "AIRFLOW_CONN_REMOTE_K8S": json.dumps(
                {
                    "conn_type": "kubernetes",
                    "extra": {
                        "kube_config_path": kubeconfig,
                        "cluster_context": CONTEXT,
                        "namespace": cluster.namespace,
                    },
                }
            ),
            "AIRFLOW_VAR_REMOTE_KUBECONFIG": kubeconfig,
            "AIRFLOW_VAR_REMOTE_CONTEXT": CONTEXT,
            "PYTHONPATH": str(REPO),
        }
    )
    migrated = airflow(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    return env


def airflow(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", AIRFLOW_LAUNCHER, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dags_test(env: dict[str, str], dag_id: str) -> str:
    started = time.monotonic()
    result = airflow(env, "dags", "test", dag_id)
    output = result.stdout + result.stderr
    took = time.monotonic() - started
    assert result.returncode == 0, f"airflow dags test {dag_id} exited {result.returncode}:\n{output[-6000:]}"
    finished = [line for line in output.splitlines() if "DagRun Finished" in line]
    assert finished and "state=success" in finished[-1], output[-6000:]
    assert "state=failed" not in output, output[-6000:]
    assert "gave up waiting for the rest of" not in output, "the pod's log never ended"
    print(f"airflow dags test {dag_id}: {took:.1f}s")
    return output


def pod_log_lines(output: str) -> list[str]:
    """The pod's lines as the trigger logged them: ``... [info ] [base] <line>   [triggers.pod...``."""
    return [
        m.group(1).rstrip() for m in re.finditer(r"\] \[base\] (.*?)\s+\[triggers\.pod\.PodTrigger\]", output)
    ]


def xcom_value(home: str, dag_id: str, task_id: str) -> object:
    with sqlite3.connect(Path(home) / "airflow.db") as db:
        rows = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = 'return_value'",
            (dag_id, task_id),
        ).fetchall()
    assert len(rows) == 1, rows
    value = rows[0][0]
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def test_hello_name(cluster: Cluster, airflow_env: dict[str, str]) -> None:
    output = dags_test(airflow_env, "example_kpo_async_hello_name")
    assert pod_log_lines(output) == ["Hello, your_name", "step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert re.search(r"created pod kpo-async-e2e/hello-name-[0-9a-f]{8}", output)
    assert re.search(r"deleted pod kpo-async-e2e/hello-name-[0-9a-f]{8}", output)
    assert live_pods(cluster, "dag_id=example_kpo_async_hello_name") == []


def test_xcom_etl(cluster: Cluster, airflow_env: dict[str, str]) -> None:
    dag_id = "example_kpo_async_xcom_etl"
    output = dags_test(airflow_env, dag_id)
    extracted = xcom_value(airflow_env["AIRFLOW_HOME"], dag_id, "extract_data")
    assert isinstance(extracted, int)
    assert pod_log_lines(output) == [f"multiplying {extracted} by 23"]
    assert xcom_value(airflow_env["AIRFLOW_HOME"], dag_id, "transform") == {
        "return_value": str(23 * extracted)
    }
    assert f"loaded transformed data point: {23 * extracted}" in output
    assert xcom_value(airflow_env["AIRFLOW_HOME"], dag_id, "load_data") == str(23 * extracted)
    assert live_pods(cluster, f"dag_id={dag_id}") == []


def test_remote_cluster(cluster: Cluster, airflow_env: dict[str, str]) -> None:
    dag_id = "example_kpo_async_remote_cluster"
    output = dags_test(airflow_env, dag_id)
    # bash -cx: the trace line (stderr) and the output line of each of the two tasks, the tasks in
    # order. Within a task the two lines may come either way round: a real kubelet writes stdout
    # and stderr from separate pipes, and an echo's trace and output carry the same timestamp.
    lines = pod_log_lines(output)
    assert sorted(lines[:2]) == [
        "+ echo hello from the cluster behind connection remote_k8s",
        "hello from the cluster behind connection remote_k8s",
    ]
    assert sorted(lines[2:]) == [f"+ echo hello from context {CONTEXT}", f"hello from context {CONTEXT}"]
    assert live_pods(cluster, f"dag_id={dag_id}") == []
