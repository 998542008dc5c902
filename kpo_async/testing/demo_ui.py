"""`kpo-async demo --ui`: the example DAGs in the Airflow UI, with a long pod's log arriving live.

Starts the embedded cluster and Airflow's api-server (with the UI), scheduler, dag-processor and
triggerer (LocalExecutor, SQLite, a throw-away home), triggers every example DAG, a long pod
(``example_kpo_async_long_running``) and a short one that fails on purpose, prints the UI's URL,
a login and the links to those two task instances, then reports state changes until Ctrl-C
(SIGINT) or SIGTERM, which stops every process it started.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType

import httpx

from kpo_async.testing.airflow_stack import AirflowStack, StackError

LONG_DAG = "example_kpo_async_long_running"
LONG_TASK = "count_lines"
#: Every example and the task whose state the demo reports.
WATCHED = {
    "example_kpo_async_hello_name": "say_hello_name",
    "example_kpo_async_xcom_etl": "transform",
    "example_kpo_async_remote_cluster": "run_via_kubeconfig_and_context",
}
USER = "admin"
FAILING_EXIT_CODE = 3


class Stop(Exception):
    """Raised by the SIGINT/SIGTERM handler to leave the watch loop."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def demo_stack(workdir: Path, dags_folder: Path, port: int | None, password: str) -> AirflowStack:
    """The stack the demo runs: the remote-cluster example's connection and variables point at the
    embedded cluster, as in `kpo-async demo`."""
    return AirflowStack(
        workdir,
        dags_folder,
        port=port,
        users={USER: password},
        connections={
            "remote_k8s": lambda stack: {
                "conn_type": "kubernetes",
                "extra": {
                    "kube_config_path": str(stack.kubeconfig),
                    "cluster_context": "kpo-async-sim",
                    "namespace": "airflow",
                },
            }
        },
        variables={
            "remote_kubeconfig": lambda stack: str(stack.kubeconfig),
            "remote_context": "kpo-async-sim",
        },
    )


def run(args: argparse.Namespace, dags_folder: Path) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="kpo-async-demo-ui-"))
    password = secrets.token_urlsafe(12)
    stack = demo_stack(workdir, dags_folder, args.port, password)
    started = time.monotonic()
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        stack.start(on_step=lambda text: print(f"{text} ...", flush=True))
        chosen = args.dag or [*WATCHED, LONG_DAG]
        stack.wait_for_dags(chosen)
        watched = _trigger(stack, chosen, args.seconds)
        _announce(stack, password, watched, time.monotonic() - started, args.seconds)
        _watch(stack, watched)
    except Stop as stop:
        print(f"\n{stop}: stopping ...", flush=True)
    except (StackError, httpx.HTTPError) as exc:
        print(f"\nthe demo failed: {exc!r}\n{stack.tails()}", flush=True)
        status = 1
    finally:
        # A second Ctrl-C must not interrupt the stopping: it would leave processes behind.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        alive = stack.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if alive:
        print(f"could not stop: {', '.join(f'{p.pid} {p.name()}' for p in alive)}", flush=True)
        return 1
    print("stopped: the cluster and every Airflow process are gone", flush=True)
    return status


def _trigger(stack: AirflowStack, dag_ids: list[str], seconds: int) -> dict[tuple[str, str, str], str]:
    """Trigger the runs; for each (dag, run, task) watched, a label."""
    watched = {}
    for dag_id, task_id in WATCHED.items():
        if dag_id in dag_ids:
            watched[(dag_id, stack.trigger_dag(dag_id), task_id)] = dag_id
    if LONG_DAG not in dag_ids:
        return watched
    live = stack.trigger_dag(LONG_DAG, {"seconds": seconds})
    watched[(LONG_DAG, live, LONG_TASK)] = "the long pod"
    fails = stack.trigger_dag(LONG_DAG, {"seconds": min(seconds, 10), "exit_code": FAILING_EXIT_CODE})
    watched[(LONG_DAG, fails, LONG_TASK)] = "the pod that fails on purpose"
    return watched


def _announce(
    stack: AirflowStack, password: str, watched: dict[tuple[str, str, str], str], took: float, seconds: int
) -> None:
    lines = [
        f"\nAirflow is up in {took:.0f}s. Open the UI on this machine:",
        f"  UI:     {stack.base_url}",
        f"  login:  {USER} / {password}",
        f"  cluster: {stack.cluster_url}  (kubectl --kubeconfig {stack.kubeconfig} get pods)",
    ]
    long_runs = [key for key in watched if key[0] == LONG_DAG]
    if long_runs:
        live, fails = long_runs
        lines += [
            f"  live:   {stack.task_url(*live)}",
            f"          a pod printing a numbered line every second for {seconds}s: watch the lines arrive",
            "          in the task's log while the task is deferred (no worker slot is held)",
            f"  fails:  {stack.task_url(*fails)}",
            f"          a pod that exits with code {FAILING_EXIT_CODE}: the reason and its last lines",
        ]
    others = [label for key, label in watched.items() if key[0] != LONG_DAG]
    if others:
        lines.append(f"Triggered too: {', '.join(others)}.")
    lines.append("Press Ctrl-C to stop everything.\n")
    print("\n".join(lines), flush=True)


def _watch(stack: AirflowStack, watched: dict[tuple[str, str, str], str]) -> None:
    """Print each watched task's state changes until stopped."""
    last: dict[tuple[str, str, str], str] = {}
    while True:
        for key, label in watched.items():
            try:
                state = stack.task_instance(*key)["state"] or "none"
            except (httpx.HTTPError, StackError) as exc:  # a busy api-server: ask again next round
                state = f"unknown for now ({type(exc).__name__})"
            if last.get(key) != state:
                last[key] = state
                print(f"{time.strftime('%H:%M:%S')}  {label}: {state}", flush=True)
        for service in stack.services.values():
            if service.proc is not None and service.proc.poll() is not None:
                raise StackError(f"{service.name} exited with {service.proc.returncode}")
        time.sleep(2)
