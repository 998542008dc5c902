"""`kpo-async demo`: the example DAGs under real Airflow 3, against the embedded cluster.

Starts the embedded cluster as a process, gives Airflow a throw-away home (SQLite), points the
``kubernetes_default`` and ``remote_k8s`` connections and the ``remote_kubeconfig`` /
``remote_context`` variables at the cluster, then runs each example with ``airflow dags test``
(the deferred task's trigger really runs) and shows the pod's log lines and the XCom values.
With ``--ui`` it runs the real Airflow services instead, to watch the runs in the UI (demo_ui.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kpo_async.testing.harness import SimProcess

EXAMPLES = ("example_kpo_async_hello_name", "example_kpo_async_xcom_etl", "example_kpo_async_remote_cluster")
_INTERESTING = re.compile(
    r"\[base\] |loaded transformed data point|Hello, |hello from|pod .* is (Pending|Running|"
    r"Succeeded|Failed)|created pod|deleted pod|new_state=|DagRun Finished|ERROR|error|"
    r"Traceback|Error"
)
#: Airflow's structured log line: time, [level], the message padded, [logger], key=value fields.
_STRUCTURED = re.compile(r"^\S+Z \[(?P<level>\w+)\s*\] (?P<message>.*?)\s+\[[\w.]+\](?P<fields>.*)$")
_SHOWN_FIELDS = re.compile(r"\b(new_state=\w+)")


def compact(line: str) -> str | None:
    """The line as the demo shows it, or None to skip it: a structured line keeps its message
    (and a state change its new state), without time, logger and request fields."""
    match = _STRUCTURED.match(line)
    if match is None:
        return line if _INTERESTING.search(line) else None
    message, fields = match["message"], match["fields"]
    if not _INTERESTING.search(message + fields):
        return None
    if message.startswith("DagRun Finished"):
        dropped = r", (logical_date|run_id|run_start_date|run_end_date|data_interval_\w+)=[^,]*"
        return re.sub(dropped, "", message).rstrip(", ")
    state = _SHOWN_FIELDS.search(fields)
    return f"{message} ({state[1]})" if state else message


def example_dags_folder() -> Path:
    """The examples next to the package (installed wheel) or at the repository root (checkout)."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "example_dags"
    if packaged.is_dir():
        return packaged
    return package.parent / "example_dags"


def airflow_env(workdir: Path, kubeconfig: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(workdir / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(example_dags_folder()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
                {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}}
            ),
            "AIRFLOW_CONN_REMOTE_K8S": json.dumps(
                {
                    "conn_type": "kubernetes",
                    "extra": {
                        "kube_config_path": str(kubeconfig),
                        "cluster_context": "kpo-async-sim",
                        "namespace": "airflow",
                    },
                }
            ),
            "AIRFLOW_VAR_REMOTE_KUBECONFIG": str(kubeconfig),
            "AIRFLOW_VAR_REMOTE_CONTEXT": "kpo-async-sim",
        }
    )
    return env


def airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kpo-async demo",
        description=(
            "Run kpo-async's example DAGs under real Airflow 3 against the embedded cluster, with "
            "nothing to set up: a throw-away Airflow home (SQLite) whose kubernetes_default and "
            "remote_k8s connections point at the cluster. Each example runs with 'airflow dags "
            "test' (its task really defers and the trigger really runs); the pods' log lines and "
            "XCom values are printed. With --ui, the Airflow services run instead, to watch the "
            "runs in the UI."
        ),
        epilog='More: "Getting started" in the kpo-async documentation.',
    )
    parser.add_argument(
        "--dag",
        action="append",
        metavar="DAG_ID",
        help=f"run only this example (repeatable): {', '.join(EXAMPLES)}",
    )
    parser.add_argument("--verbose", action="store_true", help="print Airflow's whole output")
    parser.add_argument(
        "--keep", action="store_true", help="keep the working directory (Airflow home, kubeconfig)"
    )
    parser.add_argument(
        "--ui",
        action="store_true",
        help="run the real Airflow services instead and open the UI: a long pod's log arrives live",
    )
    parser.add_argument(
        "--port", type=int, metavar="PORT", help="with --ui: the UI's port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--seconds",
        type=int,
        default=180,
        metavar="N",
        help="with --ui: how long the long pod runs, printing a line a second (default: 180)",
    )
    args = parser.parse_args(argv)
    if args.ui:
        from kpo_async.testing.demo_ui import run

        return run(args, example_dags_folder())
    workdir = Path(tempfile.mkdtemp(prefix="kpo-async-demo-"))
    try:
        sim = SimProcess(str(workdir))
    except RuntimeError as exc:
        raise SystemExit(f"the embedded cluster did not start: {exc}") from None
    kubeconfig = sim.kubeconfig_path
    failures = 0
    try:
        print(f"embedded cluster up; kubeconfig: {kubeconfig}")
        env = airflow_env(workdir, kubeconfig)
        migrated = airflow(env, "db", "migrate")
        if migrated.returncode != 0:
            print(migrated.stdout[-4000:], migrated.stderr[-4000:])
            return 1
        for dag_id in args.dag or EXAMPLES:
            print(f"\n=== airflow dags test {dag_id}")
            started = time.monotonic()
            result = airflow(env, "dags", "test", dag_id)
            output = result.stdout + result.stderr
            for line in output.splitlines():
                shown = line if args.verbose else compact(line)
                if shown is not None:
                    print(f"  {shown}")
            ok = result.returncode == 0 and "state=failed" not in output
            failures += not ok
            print(f"=== {dag_id}: {'success' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s")
    finally:
        sim.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nall examples succeeded" if not failures else f"\n{failures} example(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
