"""`airflow dags test` of each example DAG (and a templated-fields DAG) against the embedded cluster.

`dags test` runs a deferred task's trigger inline, in the same process: these tests prove the
DAGs parse, render, submit, stream the pod's log, push XComs and finalize under real Airflow 3,
not that deferral crosses processes (test_services.py does that).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.airflow.services import AIRFLOW_BIN, EXAMPLE_DAGS, TEST_DAGS, AirflowServices

pytestmark = pytest.mark.airflow

LOGICAL_DATE = "2026-03-04"


class DagTester:
    """An embedded cluster + one migrated Airflow home; runs `airflow dags test`."""

    def __init__(self, workdir: Path) -> None:
        # AirflowServices gives us the cluster process and the environment; no services start.
        self.harness = AirflowServices(
            workdir,
            dag_files=[
                *EXAMPLE_DAGS.glob("*.py"),
                TEST_DAGS / "kpo_test_templated.py",
                TEST_DAGS / "kpo_test_taken_away.py",
            ],
        )
        self.harness.prepare()
        self.harness.start_sim()
        try:
            self._setup()
        except BaseException:
            self.harness.stop()  # the cluster process must not outlive a failed setup
            raise

    def _setup(self) -> None:
        kubeconfig = str(self.harness.kubeconfig)
        self.harness.connections = {
            "remote_k8s": {
                "conn_type": "kubernetes",
                "extra": {
                    "kube_config_path": kubeconfig,
                    "cluster_context": "kpo-async-sim",
                    "namespace": "airflow",
                },
            }
        }
        self.harness.variables = {
            "remote_kubeconfig": kubeconfig,
            "remote_context": "kpo-async-sim",
            "tmpl_kubeconfig": kubeconfig,
            "tmpl_namespace": "airflow",
            "tmpl_image": "alpine:3.20",
            "tmpl_shell": "sh",
            "tmpl_x": "from-variable",
            "tmpl_label": "lbl",
            "taken_kubeconfig": kubeconfig,
        }
        self.env = self.harness.airflow_env()
        migrated = self.airflow("db", "migrate", timeout=300)
        assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AIRFLOW_BIN, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.harness.workdir,
        )

    def dags_test(self, dag_id: str, *extra: str, succeeds: bool = True) -> str:
        started = time.monotonic()
        result = self.airflow("dags", "test", dag_id, *extra)
        output = result.stdout + result.stderr
        (self.harness.service_logs / f"dags-test-{dag_id}.log").write_text(output)
        took = time.monotonic() - started
        print(f"airflow dags test {dag_id}: exit {result.returncode} in {took:.1f}s")
        if not succeeds:
            return output
        assert result.returncode == 0, output[-6000:]
        assert "state=failed" not in output, output[-6000:]
        assert re.search(rf"DagRun Finished: dag_id={dag_id}.*state=success", output), output[-6000:]
        # The shared API clients are closed when the inline trigger's loop ends, not reported by aiohttp.
        assert "Unclosed" not in output, output[-6000:]
        return output

    def close(self) -> None:
        self.harness.stop()


@pytest.fixture(scope="module")
def tester(workdir: Path) -> Iterator[DagTester]:
    tester = DagTester(workdir)
    try:
        yield tester
    finally:
        tester.close()


def pod_lines(output: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"\[base\] (.*?)(?:\s+\[|\s*$)", output, re.MULTILINE)]


def test_hello_name(tester: DagTester) -> None:
    output = tester.dags_test("example_kpo_async_hello_name")
    lines = pod_lines(output)
    assert "Hello, your_name" in lines, lines
    assert [line for line in lines if line.startswith("step ")] == [
        "step 1 of 3",
        "step 2 of 3",
        "step 3 of 3",
    ]
    assert re.search(r"deleted pod default/hello-name-[0-9a-f]{8}", output)
    assert tester.harness.list_pods("default") == []


def test_xcom_etl_value_is_23_times_the_extracted_value(tester: DagTester) -> None:
    output = tester.dags_test("example_kpo_async_xcom_etl")
    multiplied = [m for line in pod_lines(output) if (m := re.fullmatch(r"multiplying (\d+) by 23", line))]
    assert len(multiplied) == 1, pod_lines(output)
    extracted = int(multiplied[0].group(1))
    loaded = re.search(r"loaded transformed data point: (\d+)", output)
    assert loaded, output[-4000:]
    assert int(loaded.group(1)) == 23 * extracted
    # The XCom as stored in the metadata DB: {"return_value": "<23 * n>"}.
    rows = tester.harness.query(
        "SELECT value FROM xcom WHERE dag_id=? AND task_id='transform' AND key='return_value'",
        ("example_kpo_async_xcom_etl",),
    )
    assert rows, "no XCom row for transform"
    values = [json.loads(row[0]) for row in rows]
    assert {"return_value": str(23 * extracted)} in values, values


def test_remote_cluster_by_connection_and_by_templated_kubeconfig(tester: DagTester) -> None:
    output = tester.dags_test("example_kpo_async_remote_cluster")
    lines = pod_lines(output)
    assert "hello from the cluster behind connection remote_k8s" in lines, lines
    assert "hello from context kpo-async-sim" in lines, lines
    # The connection's namespace extra ("airflow") is where the first pod ran.
    assert re.search(r"created pod airflow/remote-by-conn-[0-9a-f]{8}", output), output[-4000:]
    assert re.search(r"created pod default/remote-by-file-[0-9a-f]{8}", output), output[-4000:]


def test_templated_fields_are_rendered(tester: DagTester) -> None:
    output = tester.dags_test("kpo_test_templated", LOGICAL_DATE)
    lines = pod_lines(output)
    ds_nodash = LOGICAL_DATE.replace("-", "")
    assert f"arg ds={LOGICAL_DATE} var=from-variable pulled=pulled-value-42" in lines, lines
    assert f"env RENDERED_ENV=from-variable-{ds_nodash}-pulled-value-42" in lines, lines
    assert f"env POD_NS=airflow POD_LABEL=lbl-{ds_nodash}" in lines, lines
    # The kept pod, as the cluster has it: rendered namespace (from a Variable), name, image, labels.
    pods = tester.harness.list_pods("airflow", label_selector="task_id=templated")
    assert len(pods) == 1, pods
    pod = pods[0]
    assert pod["metadata"]["name"].startswith(f"templated-{ds_nodash}-")
    assert pod["metadata"]["labels"]["rendered"] == f"lbl-{ds_nodash}"
    base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
    assert base["image"] == "alpine:3.20"
    assert base["command"] == ["sh", "-c"]
    env = {e["name"]: e.get("value") for e in base.get("env") or []}
    assert env["RENDERED_ENV"] == f"from-variable-{ds_nodash}-pulled-value-42"
    assert "{{" not in json.dumps(pod), "an unrendered template reached the pod"
    # config_file came from a Variable too: kubernetes_conn_id=None and $KUBECONFIG points nowhere,
    # so the pod could only be created through the rendered path.
    assert tester.env["KUBECONFIG"] != str(tester.harness.kubeconfig)


def test_long_running_example_with_short_params(tester: DagTester) -> None:
    """The demo's long pod (3 minutes by default), shortened through its DAG params."""
    output = tester.dags_test("example_kpo_async_long_running", "-c", '{"seconds": 3}')
    lines = pod_lines(output)
    assert [line for line in lines if line.startswith("line ")] == [
        "line 1 of 3",
        "line 2 of 3",
        "line 3 of 3",
    ]
    rows = tester.harness.query(
        "SELECT value FROM xcom WHERE dag_id=? AND task_id='count_lines' AND key='return_value'",
        ("example_kpo_async_long_running",),
    )
    assert [json.loads(row[0]) for row in rows] == [{"lines": 3}], rows


def test_a_taken_away_pod_is_relaunched_and_a_refused_spec_is_not_retried(tester: DagTester) -> None:
    """Under `dags test` (the trigger runs inline): the kubelet evicts the first pod while its init
    container runs, the task relaunches it within its try and ends with the XCom; the task whose
    spec the API server refuses fails once, though it has retries left; the task the namespace's
    quota refuses waits on the triggerer until the quota has room, then runs."""
    from kpo_async.testing.sim.control import SimControl

    async def evict(name: str) -> None:
        async with SimControl(str(tester.harness.kubeconfig)) as control:
            await control.evict("default", name, "The node was low on memory.")

    def evict_first_pod() -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for pod in tester.harness.list_pods("default", "task_id=relaunched"):
                statuses = pod["status"].get("initContainerStatuses") or []
                if any("running" in (s.get("state") or {}) for s in statuses):
                    asyncio.run(evict(pod["metadata"]["name"]))
                    return str(pod["metadata"]["name"])
            time.sleep(0.2)
        raise AssertionError("the relaunched task's pod never ran its init container")

    def free_the_quota_once_waited_on() -> None:
        deadline = time.monotonic() + 120
        while tester.harness.sim_stats()["requests"].get("get resourcequotas", 0) == 0:
            assert time.monotonic() < deadline, "the quota was never read"
            time.sleep(0.2)
        tester.harness.delete_pod("quota-dag", "blocker")

    tester.harness.fill_quota("quota-dag", pods=1)
    evicted: list[str] = []
    threads = [
        threading.Thread(target=lambda: evicted.append(evict_first_pod()), daemon=True),
        threading.Thread(target=free_the_quota_once_waited_on, daemon=True),
    ]
    for thread in threads:
        thread.start()
    output = tester.dags_test("kpo_test_taken_away", LOGICAL_DATE, succeeds=False)
    for thread in threads:
        thread.join(timeout=150)
    (first,) = evicted
    assert (
        f"pod default/{first} was terminated by its node's kubelet (DisruptionTarget: TerminationByKubelet)"
        in output
    )
    assert f"relaunch 1 of 2 as pod default/{first}-r1" in output, output[-6000:]
    assert "[base] work done" in output, output[-6000:]
    assert f"pod default/{first}-r1 succeeded" in output, output[-6000:]
    refusals = re.findall(
        r"Invalid pod spec: creating pod default/refused-[0-9a-f]+: the API server rejected it", output
    )
    assert refusals, output[-6000:]
    assert "no retry was made" in output
    refused = output[
        output.index("[DAG TEST] starting task_id=refused") : output.index(
            "[DAG TEST] end task task_id=refused"
        )
    ]
    assert "new_state=failed" in refused and "up_for_retry" not in refused.lower(), refused[-6000:]
    # The quota: one waiting line, then the pod, whose timeline shows the wait.
    waiting = "namespace quota quota-dag/team: pods used 1/1, this pod asks 1; waiting"
    assert output.count(waiting) == 1, output[-6000:]
    assert re.search(r"pod quota-dag/quota-bound-[0-9a-f]+ timeline: quota wait \d+s", output), output[-6000:]
    assert re.search(r"pod quota-dag/quota-bound-[0-9a-f]+ succeeded", output), output[-6000:]
    for namespace in ("default", "quota-dag"):
        assert tester.harness.list_pods(namespace, "dag_id=kpo_test_taken_away", include_deleting=True) == []
