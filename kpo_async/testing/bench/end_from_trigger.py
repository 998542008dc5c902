"""``make bench-end-from-trigger``: N pods through the REAL Airflow services, three ways, in one run.

    python -m kpo_async.testing.bench.end_from_trigger [--pods 100] [--duration 20]
        [--variants ours,ours_eft,official] [--database postgres|sqlite] [--keep-workdir]

One `AirflowStack` (api-server, scheduler with the LocalExecutor, dag-processor, triggerer, on a
private PostgreSQL from tools/postgres.sh; the embedded cluster on loopback) runs, one after the
other, a DAG per variant whose one task is mapped over N pods:

1. ``ours``      -- `AsyncKubernetesPodOperator` (end_from_trigger off, the default): the worker
   creates the pod and defers; the trigger's event resumes the task on a worker, which pushes the
   XCom and deletes the pod;
2. ``ours_eft``  -- the same with ``end_from_trigger=True``: the trigger pushes the XCom, deletes the
   pod and ends the task itself (TaskSuccessEvent), so the task starts on a worker once;
3. ``official``  -- the provider's ``KubernetesPodOperator(deferrable=True)``.

Every pod runs ``--duration`` seconds after its container starts (the simulator's behaviour
annotation), prints one line a second and leaves an XCom value; all three operators use
``get_logs=True`` and ``do_xcom_push=True``.

Measured per variant:

- worker task starts per task instance, counted from the task log files: every worker run of a
  task (a LocalExecutor process running the Task SDK's supervisor) writes its own records into the
  try's log file ``attempt=<n>.log``, opening with the task runner's ``"DAG bundles loaded"`` record
  (the triggerer writes to ``attempt=<n>.log.trigger.<job>.log``, apart); the count of that record
  per file is the number of worker starts of the try;
- pod end -> task instance success: the pod end is when an independent watch (`cluster.Observer`,
  in this process) saw the base container terminated (the cluster's ``finishedAt`` has one-second
  precision); success is the task instance's ``end_date`` in the metadata DB; p50 and p99;
- wall time: from the run's trigger (REST POST) to the last task instance's ``end_date``.

The table ends with each figure's ratio to the official operator's. docs/scale.md ("Ending from the
trigger").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kpo_async.testing.airflow_stack import AirflowStack, wait_until
from kpo_async.testing.bench.airflow_env import read_trigger_log
from kpo_async.testing.bench.cluster import Observer
from kpo_async.testing.bench.common import fmt_num, loadavg, percentile
from kpo_async.testing.sim import BEHAVIOR_ANNOTATION

REPO = Path(__file__).resolve().parents[3]
TASK_ID = "pod"
#: The record a worker writes first in the try's log file at each start, before parsing the DAG file
#: ("DAG bundles loaded: dags-folder"; a "::group::Pre Execute" marker precedes it).
WORKER_START_EVENT = "DAG bundles loaded"
OFFICIAL_CONN = "kpo_bench_official"


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    dag_id: str
    imports: str
    operator: str
    options: str


VARIANTS = {
    "ours": Variant(
        "ours",
        "ours, end_from_trigger=False",
        "bench_eft_ours",
        "from kpo_async import AsyncKubernetesPodOperator",
        "AsyncKubernetesPodOperator",
        "",
    ),
    "ours_eft": Variant(
        "ours_eft",
        "ours, end_from_trigger=True",
        "bench_eft_ours_eft",
        "from kpo_async import AsyncKubernetesPodOperator",
        "AsyncKubernetesPodOperator",
        "end_from_trigger=True,",
    ),
    "official": Variant(
        "official",
        "official KPO(deferrable=True)",
        "bench_eft_official",
        "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator",
        "KubernetesPodOperator",
        # The official operator turns its config_file into the trigger's config_dict, which must not
        # meet a kubeconfig in the connection (kubernetes_default names one): a bare connection.
        f"deferrable=True, kubernetes_conn_id={OFFICIAL_CONN!r}, config_file={{kubeconfig!r}},",
    ),
}

DAG_TEMPLATE = '''"""Written by kpo_async.testing.bench.end_from_trigger: {label}, {n} mapped pods."""
from datetime import datetime

from airflow.sdk import DAG

{imports}

with DAG(
    dag_id="{dag_id}",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    max_active_tasks={n},
):
    {operator}.partial(
        task_id="{task_id}",
        namespace="default",
        image="alpine:3.20",
        cmds=["sh", "-c", "echo working; sleep {duration}"],
        annotations={annotations!r},
        get_logs=True,
        do_xcom_push=True,
        startup_timeout_seconds=600,
        {options}
    ).expand(name=[f"{prefix}-{{i}}" for i in range({n})])
'''


def supports_end_from_trigger() -> bool:
    """Whether this checkout's operator takes ``end_from_trigger`` (variant 2)."""
    from kpo_async import AsyncKubernetesPodOperator

    return "end_from_trigger" in inspect.signature(AsyncKubernetesPodOperator.__init__).parameters


def dag_file(variant: Variant, n: int, duration: float, kubeconfig: Path) -> str:
    behaviour = {"duration_seconds": duration, "log_lines_per_second": 1, "exit_code": 0, "xcom": {"ok": 1}}
    return DAG_TEMPLATE.format(
        label=variant.label,
        n=n,
        imports=variant.imports,
        dag_id=variant.dag_id,
        operator=variant.operator,
        task_id=TASK_ID,
        duration=duration,
        annotations={BEHAVIOR_ANNOTATION: json.dumps(behaviour)},
        options=variant.options.format(kubeconfig=str(kubeconfig)),
        prefix=variant.key.replace("_", "-"),
    )


# --- the watch ------------------------------------------------------------------------------------


@dataclass
class PodWatch(Observer):
    """`Observer` on every pod of the namespace, also keeping each pod's labels (dag_id, map_index)."""

    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def _see(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        self.labels.setdefault(meta.get("name", ""), dict(meta.get("labels") or {}))
        super()._see(pod)


class WatchThread:
    """The watch in its own thread and event loop, beside the synchronous stack."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.watch: PodWatch | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(),), daemon=True
        )

    async def _main(self) -> None:
        from kpo_async.clients import create_client
        from kpo_async.connection import ClusterRef

        self._stop = asyncio.Event()
        client = await create_client(ClusterRef(config_file=self.kubeconfig))
        self.watch = PodWatch(client, "default", "")
        self.watch.start()
        await asyncio.wait_for(self.watch.synced.wait(), 60)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.watch.stop()
            await client.close()

    def start(self) -> PodWatch:
        self._thread.start()
        if not self._ready.wait(90) or self.watch is None:
            raise RuntimeError("the pod watch did not sync")
        return self.watch

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)


# --- one variant ----------------------------------------------------------------------------------


@dataclass
class Result:
    variant: Variant
    n: int
    states: dict[str, int] = field(default_factory=dict)
    starts: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    #: Pod end -> the trigger's event ("Trigger fired event" in its trigger log file): the part
    #: spent on the triggerer (with end_from_trigger: the XCom push and the pod's deletion too).
    to_event_ms: list[float] = field(default_factory=list)
    #: The trigger's event -> task instance success: Airflow's part (its trigger runner hands events
    #: to its supervisor once a loop turn, at least a second apart when idle, then the commit).
    event_to_end_ms: list[float] = field(default_factory=list)
    #: The same from the cluster's ``finishedAt`` (1 s precision), a cross-check of the watch.
    latencies_finished_ms: list[float] = field(default_factory=list)
    wall_s: float = float("nan")
    missing_pod_end: int = 0

    @property
    def starts_per_task(self) -> float:
        return sum(self.starts) / len(self.starts) if self.starts else float("nan")


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def ti_log_folder(stack: AirflowStack, dag_id: str, run_id: str, map_index: int) -> Path:
    folder = stack.task_logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={TASK_ID}"
    return folder / f"map_index={map_index}"


def fired_at(stack: AirflowStack, dag_id: str, run_id: str, map_index: int) -> float | None:
    """When the task instance's (first) trigger fired its event, from its trigger log files."""
    times = [
        log.fired_at
        for path in ti_log_folder(stack, dag_id, run_id, map_index).glob("attempt=*.log.trigger.*.log")
        if (log := read_trigger_log(path)).fired_at is not None
    ]
    return min(times, default=None)


def worker_starts(stack: AirflowStack, dag_id: str, run_id: str, map_index: int) -> int:
    """Worker runs of the task instance: the task runner's opening record, per worker run, in the
    try's log file (every try's file of the task instance)."""
    folder = ti_log_folder(stack, dag_id, run_id, map_index)
    starts = 0
    for path in folder.glob("attempt=*.log"):
        for raw in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                if str(json.loads(raw).get("event", "")).startswith(WORKER_START_EVENT):
                    starts += 1
    return starts


def run_variant(stack: AirflowStack, watch: PodWatch, variant: Variant, n: int, timeout: float) -> Result:
    run_id = f"bench-{variant.key}-{int(time.time())}"
    say(f"{variant.label}: triggering {n} pods (run {run_id})")
    t0 = time.time()
    stack.trigger_dag(variant.dag_id, run_id=run_id)

    def finished() -> bool:
        rows = stack.query(
            "SELECT count(*) FROM task_instance WHERE dag_id=? AND run_id=? AND state IN "
            "('success', 'failed', 'skipped', 'upstream_failed', 'removed')",
            (variant.dag_id, run_id),
        )
        return rows[0][0] >= n

    last = [0.0]

    def progress() -> bool:
        done = finished()
        if time.time() - last[0] > 30 or done:
            last[0] = time.time()
            rows = stack.query(
                "SELECT state, count(*) FROM task_instance WHERE dag_id=? AND run_id=? GROUP BY state",
                (variant.dag_id, run_id),
            )
            say(f"  {variant.key}: {dict(sorted((str(s), c) for s, c in rows))}; load {loadavg()}")
        return done

    wait_until(
        progress, timeout=timeout, what=f"{n} task instances of {variant.dag_id} to end", first=1, most=2
    )
    rows = stack.query(
        "SELECT map_index, state, end_date FROM task_instance WHERE dag_id=? AND run_id=? AND task_id=?",
        (variant.dag_id, run_id, TASK_ID),
    )
    result = Result(variant, n)
    ended: dict[int, float] = {}
    for map_index, state, end_date in rows:
        result.states[str(state)] = result.states.get(str(state), 0) + 1
        at = _epoch(end_date)
        if at is not None:
            ended[int(map_index)] = at
        result.starts.append(worker_starts(stack, variant.dag_id, run_id, int(map_index)))
    result.wall_s = max(ended.values(), default=float("nan")) - t0
    pods = {
        int(labels["map_index"]): name
        for name, labels in list(watch.labels.items())
        if labels.get("dag_id") == variant.dag_id and "map_index" in labels
    }
    for map_index, at in ended.items():
        name = pods.get(map_index)
        seen = watch.terminated_at.get(name) if name else None
        if seen is None:
            result.missing_pod_end += 1
            continue
        result.latencies_ms.append((at - seen) * 1000)
        fired = fired_at(stack, variant.dag_id, run_id, map_index)
        if fired is not None:
            result.to_event_ms.append((fired - seen) * 1000)
            result.event_to_end_ms.append((at - fired) * 1000)
        finished_at = watch.finished_at.get(name or "")
        if finished_at:
            result.latencies_finished_ms.append((at - _epoch(finished_at)) * 1000)  # type: ignore[operator]
    say(
        f"  {variant.key}: done in {result.wall_s:.0f}s, states {result.states}, "
        f"worker starts/task {result.starts_per_task:.2f}, pod end -> success p50 "
        f"{percentile(result.latencies_ms, 50):.0f} ms"
    )
    return result


# --- the table ------------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    official = next((r for r in results if r.variant.key == "official"), None)

    def ratio(value: float, base: float | None) -> str:
        if base is None or not base or value != value or base != base:
            return "-"
        return f"{value / base:.2f}x"

    header = (
        "| variant | N | states | worker starts/task | pod end -> TI success p50 | p99 | wall time |"
        " vs official: starts | p50 | p99 | wall |"
    )
    lines = [header, "|" + "---|" * 11]
    for r in results:
        p50, p99 = percentile(r.latencies_ms, 50), percentile(r.latencies_ms, 99)
        o50 = percentile(official.latencies_ms, 50) if official else None
        o99 = percentile(official.latencies_ms, 99) if official else None
        states = ", ".join(f"{k} {v}" for k, v in sorted(r.states.items()))
        lines.append(
            f"| {r.variant.label} | {r.n} | {states} | {r.starts_per_task:.2f} "
            f"(min {min(r.starts, default=0)}, max {max(r.starts, default=0)}) | "
            f"{fmt_num(p50 / 1000)} s | {fmt_num(p99 / 1000)} s | {r.wall_s:.0f} s | "
            f"{ratio(r.starts_per_task, official.starts_per_task if official else None)} | "
            f"{ratio(p50, o50)} | {ratio(p99, o99)} | "
            f"{ratio(r.wall_s, official.wall_s if official else None)} |"
        )
    return "\n".join(lines)


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench-end-from-trigger", description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=100, help="mapped task instances (pods) per variant")
    p.add_argument("--duration", type=float, default=20.0, help="seconds each pod runs (default 20)")
    p.add_argument("--variants", default="ours,ours_eft,official", help="comma-separated, run in this order")
    p.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    p.add_argument("--parallelism", type=int, default=4, help="LocalExecutor worker processes (default 4)")
    p.add_argument("--timeout", type=float, default=1800.0, help="per variant, seconds")
    p.add_argument("--keep-workdir", action="store_true")
    return p


def bench(args: argparse.Namespace) -> int:
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    unknown = [k for k in keys if k not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if "ours_eft" in keys and not supports_end_from_trigger():
        say("this checkout's AsyncKubernetesPodOperator has no end_from_trigger: variant ours_eft skipped")
        keys.remove("ours_eft")
    variants = [VARIANTS[k] for k in keys]
    workdir = Path(tempfile.mkdtemp(prefix=f"kpo-bench-eft-{args.pods}-"))
    stack = AirflowStack(
        workdir,
        database=args.database,
        connections={OFFICIAL_CONN: {"conn_type": "kubernetes", "extra": {}}},
        sim_args=["--watch-history", "20000"],
        extra_env={
            # The workers and the triggerer import this checkout's kpo_async and triggers.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "AIRFLOW__CORE__PARALLELISM": str(args.parallelism),
            # The deployment-wide default stays off: only variant 2's operator sets it.
            "AIRFLOW__KPO_ASYNC__END_FROM_TRIGGER": "False",
        },
    )
    stack.prepare()
    for variant in variants:
        (stack.dags_folder / f"{variant.dag_id}.py").write_text(
            dag_file(variant, args.pods, args.duration, stack.kubeconfig)
        )
    started = time.time()
    watcher: WatchThread | None = None
    results: list[Result] = []
    try:
        stack.start(timeout=600, on_step=say)
        stack.wait_for_dags([v.dag_id for v in variants], timeout=300)
        say(f"services healthy and DAGs parsed in {time.time() - started:.0f}s (workdir {workdir})")
        watcher = WatchThread(str(stack.kubeconfig))
        watch = watcher.start()
        for variant in variants:
            results.append(run_variant(stack, watch, variant, args.pods, args.timeout))
            time.sleep(5)  # the last pods' deletions settle before the next variant starts
    except BaseException:
        print(stack.tails(), file=sys.stderr)
        raise
    finally:
        if watcher is not None:
            watcher.stop()
        stack.stop()
        if not args.keep_workdir:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    print()
    print(
        f"end_from_trigger benchmark: N={args.pods} pods per variant, {args.duration:g} s each, "
        f"database {args.database}, parallelism {args.parallelism}, one run of {time.time() - started:.0f} s"
    )
    print(table(results))
    for r in results:
        print(
            f"  {r.variant.key}: pod end -> trigger event p50 {percentile(r.to_event_ms, 50) / 1000:.2f} s, "
            f"p99 {percentile(r.to_event_ms, 99) / 1000:.2f} s ({len(r.to_event_ms)} events); "
            f"trigger event -> TI end p50 {percentile(r.event_to_end_ms, 50) / 1000:.2f} s, "
            f"p99 {percentile(r.event_to_end_ms, 99) / 1000:.2f} s"
        )
        if r.missing_pod_end:
            print(f"  {r.variant.key}: {r.missing_pod_end} task instances without a watched pod end")
        if r.latencies_finished_ms:
            print(
                f"  {r.variant.key}: from the cluster's finishedAt (1 s precision) p50 "
                f"{percentile(r.latencies_finished_ms, 50) / 1000:.2f} s, p99 "
                f"{percentile(r.latencies_finished_ms, 99) / 1000:.2f} s"
            )
    bad = [r for r in results if r.states.get("success", 0) != r.n]
    return 1 if bad else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop the services and PostgreSQL on SIGTERM too
    return bench(_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
