"""Soak test: many pods, a triggerer killed again and again, random API faults. Count what was lost.

    python -m kpo_async.testing.soak --pods 500 --restarts 20 --seed 1

The parent process

* starts the embedded cluster as its own process (`python -m kpo_async.testing.sim`);
* creates the pods itself, as the operator's `execute` would (`kpo_async.pod_builder.build_pod`, so
  labels and names are the operator's; `kpo_async.pods.create_pod`), each with a behaviour annotation
  (10-60 s, a few numbered log lines a second, an exit code, some with an XCom value), and keeps each
  trigger's *original* serialized form (classpath + kwargs), as the metadata DB does;
* runs a "mini triggerer" child process (`--child`) that creates `PodTrigger`s from those serialized
  forms exactly as Airflow's triggerer does (import the classpath, call it with the kwargs, bind the
  trigger id into the log context, iterate `run()`, `cleanup()` in a finally) and writes every event
  and every log line the triggers emit (JSON lines, one write per line, so a SIGKILL loses nothing
  already emitted);
* kills the child at random times, with SIGTERM (the child cancels every trigger's task and awaits
  each `cleanup()`, like the real triggerer) or SIGKILL, and starts a new one with every
  not-yet-finished trigger's original kwargs;
* injects random faults into the cluster over its control API all along (5xx, 429 with Retry-After,
  connections reset mid-response or mid-stream, watches closed early, 410 Gone, slow answers);
* finalizes each pod once its event is recorded, as `execute_complete` would (delete the pod), and at
  the end counts what is left.

It prints: pods run, faults injected, restarts survived (SIGTERM/SIGKILL), pods lost (no event),
duplicated (two events, or a wrong result), orphaned pods (left in the cluster), log lines lost and
repeated (attributed to the kind of restart after which they were repeated). A JSON copy of the result
is written to ``<workdir>/result.json``. The exit status is 0 when nothing was lost, duplicated,
wrong or orphaned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

BEHAVIOR_ANNOTATION = "sim.kpo-async.io/behavior"
TRIGGER_CLASSPATH = "triggers.pod.PodTrigger"
NAMESPACE = "default"
DAG_ID = "soak"
_LINE = re.compile(r"^\[base\] soak-(\d+) line (\d+)$")


# ------------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------------


@dataclass
class PodPlan:
    """One pod of the soak and what its trigger must report."""

    index: int
    duration: float
    rate: int
    exit_code: int
    do_xcom: bool
    xcom: Any = None
    pod_name: str = ""
    created_at: float = 0.0
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def lines(self) -> int:
        return math.floor(self.duration * self.rate + 1e-9)  # as the simulator computes it

    def behavior(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "duration_seconds": self.duration,
            "log_lines_per_second": self.rate,
            "log_line": f"soak-{self.index} line {{i}}",
            "exit_code": self.exit_code,
        }
        if self.do_xcom:
            spec["xcom"] = self.xcom
        return spec

    def wrong(self, event: dict[str, Any]) -> str | None:
        """Why `event` is not what this pod must give, or None."""
        if self.exit_code == 0:
            if event.get("status") != "success":
                return f"expected success, got {event.get('status')}: {event.get('message')}"
            if event.get("xcom") != (self.xcom if self.do_xcom else None):
                return f"expected XCom {self.xcom!r}, got {event.get('xcom')!r}"
            return None
        if event.get("status") != "failed" or event.get("exit_code") != self.exit_code:
            return (
                f"expected failed with exit code {self.exit_code}, got {event.get('status')} "
                f"({event.get('exit_code')}): {event.get('message')}"
            )
        return None


def make_plans(count: int, rng: random.Random, min_s: float, max_s: float) -> list[PodPlan]:
    plans = []
    for index in range(count):
        exit_code = 0 if rng.random() < 0.8 else rng.choice([1, 2, 3, 42, 137])
        do_xcom = exit_code == 0 and rng.random() < 0.7
        plans.append(
            PodPlan(
                index=index,
                duration=round(rng.uniform(min_s, max_s), 1),
                rate=rng.randint(1, 4),
                exit_code=exit_code,
                do_xcom=do_xcom,
                xcom={"pod": index, "value": rng.randint(0, 10**6)} if do_xcom else None,
            )
        )
    return plans


# ------------------------------------------------------------------------------------------------
# faults
# ------------------------------------------------------------------------------------------------

_PODS = rf"/api/v1/namespaces/{NAMESPACE}/pods"
_TARGETS: dict[str, dict[str, Any]] = {
    "create": {"method": "POST", "path": rf"{_PODS}$"},
    "get": {"method": "GET", "path": rf"{_PODS}/[^/]+$"},
    "list": {"method": "GET", "path": rf"{_PODS}$", "query": "limit="},
    "watch": {"method": "GET", "path": rf"{_PODS}$", "query": "watch=true"},
    "log": {"method": "GET", "path": rf"{_PODS}/[^/]+/log$"},
    "exec": {"method": "*", "path": rf"{_PODS}/[^/]+/exec$"},
    "patch": {"method": "PATCH", "path": rf"{_PODS}/[^/]+$"},
    "delete": {"method": "DELETE", "path": rf"{_PODS}/[^/]+$"},
}


RESET_TARGETS = ("watch", "log", "list", "get")


def random_fault(
    rng: random.Random, reset_targets: tuple[str, ...] = RESET_TARGETS
) -> tuple[str, dict[str, Any]]:
    """A fault (as the control API takes it) and its kind."""
    kind = rng.choices(["5xx", "429", "reset", "watch-cut", "410", "latency"], weights=[4, 2, 3, 2, 1, 2])[0]
    if kind == "5xx":
        target = rng.choice(list(_TARGETS))
        return kind, {
            **_TARGETS[target],
            "status": rng.choice([500, 502, 503, 504]),
            "times": rng.randint(1, 3),
        }
    if kind == "429":
        target = rng.choice(list(_TARGETS))
        return kind, {
            **_TARGETS[target],
            "status": 429,
            "retry_after": rng.choice([1, 2]),
            "times": rng.randint(1, 2),
        }
    if kind == "reset":  # connection reset mid-response (list, get) or mid-stream (watch, log)
        weights = {"watch": 2, "log": 3, "list": 1, "get": 1}
        target = rng.choices(reset_targets, weights=[weights.get(t, 1) for t in reset_targets])[0]
        return kind, {
            **_TARGETS[target],
            "drop_after_bytes": rng.randint(50, 6000),
            "times": rng.randint(1, 2),
        }
    if kind == "watch-cut":
        return kind, {**_TARGETS["watch"], "watch_close_after": round(rng.uniform(0.2, 3), 2), "times": 1}
    if kind == "410":
        return kind, {**_TARGETS["watch"], "watch_gone": True, "times": 1}
    target = rng.choice(list(_TARGETS))
    return kind, {**_TARGETS[target], "latency": round(rng.uniform(0.2, 2.0), 2), "times": rng.randint(1, 5)}


# ------------------------------------------------------------------------------------------------
# the mini triggerer (child process)
# ------------------------------------------------------------------------------------------------


def child_main(args: argparse.Namespace) -> int:
    # Import everything that may configure logging first, then take logging over.
    import structlog
    from airflow.sdk.module_loading import import_string

    import triggers.pod  # noqa: F401

    log_file = open(os.path.join(args.workdir, "logs.jsonl"), "a", buffering=1, encoding="utf-8")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=repr),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=log_file),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        filename=os.path.join(args.workdir, f"child-{args.generation}.stdlib.log"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    events_fd = os.open(
        os.path.join(args.workdir, "events.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
    )
    try:
        asyncio.run(_child(args.generation, events_fd, import_string))
    finally:
        os.close(events_fd)
        log_file.close()
    return 0


async def _child(generation: int, events_fd: int, import_string: Any) -> None:
    from structlog.contextvars import bind_contextvars

    from kpo_async.clients import close_shared_clients
    from kpo_async.testing.harness import drive
    from kpo_async.watch import stop_shared_watchers

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    tasks: dict[int, asyncio.Task[None]] = {}
    classes: dict[str, Any] = {}

    async def run_trigger(trigger_id: int, trigger: Any) -> None:
        # As Airflow's TriggerRunner.run_trigger (harness.drive), with the id in the log context.
        bind_contextvars(trigger_id=trigger_id, generation=generation)

        def record(payload: dict[str, Any]) -> None:
            event = {"trigger_id": trigger_id, "generation": generation, "time": time.time()}
            os.write(events_fd, (json.dumps({**event, "payload": payload}) + "\n").encode())

        await drive(trigger, record)

    async def read_commands() -> None:
        reader = asyncio.StreamReader(limit=2**24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print("ready", flush=True)  # to the parent: imports done, triggers can come
        while line := await reader.readline():
            if not line.strip():
                continue
            record = json.loads(line)
            trigger_id = record["id"]
            if trigger_id in tasks:
                continue  # as the triggerer: "had insertion attempted twice"
            cls = classes.get(record["classpath"]) or import_string(record["classpath"])
            classes[record["classpath"]] = cls
            trigger = cls(**record["kwargs"])
            tasks[trigger_id] = asyncio.create_task(
                run_trigger(trigger_id, trigger), name=f"trigger-{trigger_id}"
            )
        stop.set()  # the parent went away

    reader = asyncio.create_task(read_commands())
    await stop.wait()
    # Graceful shutdown, as the triggerer's: cancel every trigger's task; each one's finally awaits
    # its cleanup() (which records the log cursor on the pod).
    reader.cancel()
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(reader, *tasks.values(), return_exceptions=True)
    await stop_shared_watchers()
    await close_shared_clients()


# ------------------------------------------------------------------------------------------------
# the parent
# ------------------------------------------------------------------------------------------------


class Child:
    """One incarnation of the mini triggerer."""

    def __init__(self, generation: int, proc: asyncio.subprocess.Process) -> None:
        self.generation = generation
        self.proc = proc
        self.sent: set[int] = set()
        self.ended_by = "running"

    async def send(self, plans: list[PodPlan]) -> None:
        lines = [
            json.dumps({"id": p.index, "classpath": TRIGGER_CLASSPATH, "kwargs": p.kwargs}) + "\n"
            for p in plans
            if p.index not in self.sent
        ]
        if not lines or self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("".join(lines).encode())
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return  # it died: the next incarnation gets them
        self.sent.update(p.index for p in plans)


@dataclass
class Soak:
    args: argparse.Namespace
    workdir: str
    kubeconfig: str
    plans: list[PodPlan]
    rng: random.Random
    events: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    generations: dict[int, str] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    created: list[PodPlan] = field(default_factory=list)
    create_failures: int = 0
    finalize_failures: int = 0
    _events_offset: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    child: Child | None = None
    _finalizers: list[asyncio.Task[None]] = field(default_factory=list)
    _to_finalize: list[int] = field(default_factory=list)
    _finalize_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))

    # -- the triggerer's life and death ---------------------------------------------------------
    async def start_child(self, generation: int) -> Child:
        """Start the mini triggerer and hand it every unfinished trigger once it is ready."""
        out = open(os.path.join(self.workdir, f"child-{generation}.err"), "wb")  # noqa: ASYNC230
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kpo_async.testing.soak",
            "--child",
            "--workdir",
            self.workdir,
            "--generation",
            str(generation),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=out,
        )
        out.close()
        child = Child(generation, proc)
        self.generations[generation] = "running"
        assert proc.stdout is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.stdout.readline(), 120)
        await child.send(self.unfinished())
        return child

    def unfinished(self) -> list[PodPlan]:
        return [p for p in self.created if not self.events.get(p.index)]

    async def stop_child(self, child: Child, how: str) -> None:
        proc = child.proc
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                how = "SIGTERM, then SIGKILL after 30 s"
        elif how != "final":
            how = f"died by itself ({proc.returncode})"
        child.ended_by = how
        self.generations[child.generation] = how
        self.read_events()

    async def killer(self, expected_end: float) -> None:
        """Kill the triggerer at random times, then start a new one, spreading the restarts asked for
        over the expected run; each triggerer lives at least 3 s after it is ready."""
        generation = self.child.generation if self.child else 1
        overhead = 6.0  # kill + restart + imports, measured below
        while True:
            remaining = self.args.restarts - sum(self.restarts.values())
            if remaining > 0:
                mean = max(3.0, (expected_end - time.monotonic()) / (remaining * 1.2) - overhead)
            else:
                mean = 12.0
            await asyncio.sleep(self.rng.uniform(0.6, 1.4) * mean)
            how = "SIGTERM" if self.rng.random() < 0.5 else "SIGKILL"
            async with self._lock:
                assert self.child is not None
                began = time.monotonic()
                await self.stop_child(self.child, how)
                self.restarts[self.child.ended_by] += 1
                await asyncio.sleep(self.rng.uniform(0.0, 2.0))  # the triggerer restarts
                generation += 1
                self.child = await self.start_child(generation)
                overhead = 0.5 * overhead + 0.5 * (time.monotonic() - began)

    # -- pods -----------------------------------------------------------------------------------
    async def creator(self, client: Any) -> None:
        from kpo_async.identity import TaskIdentity
        from kpo_async.pod_builder import PodArguments, build_pod
        from kpo_async.pods import create_pod, read_pod
        from triggers.pod import PodTrigger

        next_at = time.monotonic()
        for plan in self.plans:
            identity = TaskIdentity(
                dag_id=DAG_ID, task_id=f"pod-{plan.index}", run_id=f"soak-{self.args.seed}"
            )
            pod = build_pod(
                PodArguments(
                    namespace=NAMESPACE,
                    name=f"soak-{plan.index}",
                    image="alpine:3.20",
                    annotations={BEHAVIOR_ANNOTATION: json.dumps(plan.behavior())},
                    do_xcom_push=plan.do_xcom,
                ),
                identity=identity,
            )
            for attempt in range(5):  # as Airflow's task retries would
                try:
                    state = await create_pod(client, pod)
                    if state is None:  # created by an attempt whose answer was lost
                        state = await read_pod(client, NAMESPACE, pod.metadata.name)
                    if state is not None:
                        break
                except Exception as exc:
                    self.create_failures += 1
                    print(
                        f"  create of {pod.metadata.name} failed (attempt {attempt + 1}): {exc}", flush=True
                    )
                    await asyncio.sleep(1)
            else:
                raise RuntimeError(f"could not create {pod.metadata.name}")
            plan.pod_name = state.name
            plan.created_at = time.time()
            # What the operator defers with (see AsyncKubernetesPodOperator.execute), serialized as
            # the metadata DB stores it; never changed afterwards.
            _, kwargs = PodTrigger(
                pod_name=state.name,
                namespace=NAMESPACE,
                cluster={
                    "conn_id": None,
                    "config_file": self.kubeconfig,
                    "cluster_context": None,
                    "in_cluster": None,
                },
                base_container_name="base",
                get_logs=True,
                do_xcom_push=plan.do_xcom,
                startup_deadline=plan.created_at + 120,
                execution_deadline=None,
                on_kill_action="delete_pod",
                fallback_poll_seconds=30.0,
            ).serialize()
            plan.kwargs = json.loads(json.dumps(kwargs))
            self.created.append(plan)  # deferred: the triggerer picks it up (see syncer)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += 1 / self.args.create_rate

    async def syncer(self) -> None:
        """The triggerer's loop that loads new triggers from the DB: hand it the ones it lacks."""
        while True:
            async with self._lock:
                if self.child is not None:
                    await self.child.send(self.unfinished())
            await asyncio.sleep(0.5)

    def read_events(self) -> list[int]:
        """New events from the triggerer's event file (the 'metadata DB'); returns their trigger ids."""
        path = os.path.join(self.workdir, "events.jsonl")
        if not os.path.exists(path):
            return []
        new = []
        with open(path, "rb") as handle:
            handle.seek(self._events_offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._events_offset += len(complete)
        for line in complete.splitlines():
            record = json.loads(line)
            self.events[record["trigger_id"]].append(record)
            new.append(record["trigger_id"])
            if len(self.events[record["trigger_id"]]) == 1:
                self._to_finalize.append(record["trigger_id"])
        return new

    def schedule_finalizers(self, client: Any) -> None:
        """Each task whose event is recorded resumes on a worker, which finalizes its pod."""
        while self._to_finalize:
            plan = self.plans[self._to_finalize.pop(0)]
            self._finalizers.append(asyncio.create_task(self.finalize(client, plan)))

    async def event_tailer(self, client: Any) -> None:
        while True:
            async with self._lock:
                self.read_events()
            self.schedule_finalizers(client)
            await asyncio.sleep(0.5)

    async def finalize(self, client: Any, plan: PodPlan) -> None:
        """execute_complete's step on a worker: delete the pod (on_finish_action='delete_pod')."""
        from kpo_async.pods import delete_pod

        async with self._finalize_slots:
            for attempt in range(5):
                try:
                    await delete_pod(client, NAMESPACE, plan.pod_name)
                    return
                except Exception as exc:
                    self.finalize_failures += 1
                    print(f"  finalize of {plan.pod_name} failed (attempt {attempt + 1}): {exc}", flush=True)
                    await asyncio.sleep(1)

    async def injector(self, ctl: Any) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(0.5, 2.5) * self.args.fault_interval)
            kind, fault = random_fault(self.rng, tuple(self.args.reset_targets.split(",")))
            with contextlib.suppress(Exception):
                await ctl.add_fault(fault)
                self.faults[kind] += 1

    async def progress(self) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(15)
            done = sum(1 for p in self.created if self.events.get(p.index))
            print(
                f"  [{time.monotonic() - started:5.0f}s] created {len(self.created)}/{len(self.plans)}, "
                f"finished {done}, restarts {sum(self.restarts.values())} ({dict(self.restarts)}), "
                f"faults {sum(self.faults.values())}",
                flush=True,
            )


async def _parent(args: argparse.Namespace) -> dict[str, Any]:
    from kpo_async.clients import create_client
    from kpo_async.connection import ClusterRef
    from kpo_async.testing.harness import SimProcess
    from kpo_async.testing.sim.control import SimControl

    workdir = args.workdir or tempfile.mkdtemp(prefix="kpo-async-soak-")
    os.makedirs(workdir, exist_ok=True)
    for stale in ("events.jsonl", "logs.jsonl"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(workdir, stale))
    sim = await asyncio.to_thread(SimProcess, workdir)
    kubeconfig = sim.kubeconfig_path
    rng = random.Random(args.seed)
    plans = make_plans(args.pods, rng, args.min_seconds, args.max_seconds)
    soak = Soak(args, workdir, kubeconfig, plans, rng)
    client = await create_client(ClusterRef(config_file=kubeconfig))
    ctl = SimControl(kubeconfig)
    expected_span = args.pods / args.create_rate + args.max_seconds
    print(
        f"soak: {args.pods} pods over ~{expected_span:.0f}s, >= {args.restarts} triggerer restarts, "
        f"random API faults; workdir {workdir}",
        flush=True,
    )
    started = time.monotonic()
    background: list[asyncio.Task[Any]] = []
    try:
        soak.child = await soak.start_child(1)
        background = [
            asyncio.create_task(soak.event_tailer(client)),
            asyncio.create_task(soak.killer(started + expected_span)),
            asyncio.create_task(soak.injector(ctl)),
            asyncio.create_task(soak.progress()),
            asyncio.create_task(soak.syncer()),
        ]
        await soak.creator(client)
        deadline = time.monotonic() + args.max_seconds + args.grace
        while time.monotonic() < deadline and soak.unfinished():  # noqa: ASYNC110 - polls a file
            await asyncio.sleep(1)
        for task in background[1:3]:  # no more kills nor faults
            task.cancel()
        await asyncio.gather(*background[1:3], return_exceptions=True)
        async with soak._lock:
            await soak.stop_child(soak.child, "final")
        await asyncio.sleep(1)
        for task in (background[0], *background[3:]):
            task.cancel()
        await asyncio.gather(background[0], *background[3:], return_exceptions=True)
        soak.read_events()
        soak.schedule_finalizers(client)
        await asyncio.gather(*soak._finalizers)
        pending_faults = len(await ctl.faults())
        await ctl.clear_faults()
        # A task whose trigger never fired would time out and its pod be deleted by Airflow's
        # cleanup: do that for the lost ones, then count what is really left.
        lost = [p for p in soak.created if not soak.events.get(p.index)]
        for plan in lost:
            await soak.finalize(client, plan)
        orphans = await _remaining_pods(client, wait=60)
        result = report(soak, orphans, pending_faults, time.monotonic() - started)
    finally:
        for task in background:
            task.cancel()
        if soak.child is not None and soak.child.proc.returncode is None:
            soak.child.proc.kill()
            await soak.child.proc.wait()
        await ctl.close()
        await client.close()
        await asyncio.to_thread(sim.stop)
    with open(os.path.join(workdir, "result.json"), "w") as handle:  # noqa: ASYNC230
        json.dump(result, handle, indent=2, default=str)
    return result


async def _remaining_pods(client: Any, wait: float) -> list[str]:
    deadline = time.monotonic() + wait
    while True:
        response = await client.core.list_namespaced_pod(NAMESPACE, label_selector=f"dag_id={DAG_ID}")
        names = [p.metadata.name for p in response.items]
        if not names or time.monotonic() > deadline:
            return names
        await asyncio.sleep(1)


# ------------------------------------------------------------------------------------------------
# accounting
# ------------------------------------------------------------------------------------------------


def report(soak: Soak, orphans: list[str], pending_faults: int, elapsed: float) -> dict[str, Any]:
    plans = {p.index: p for p in soak.created}
    lost = sorted(i for i in plans if not soak.events.get(i))
    duplicated = sorted(i for i in plans if len(soak.events.get(i, [])) > 1)
    wrong = {i: plans[i].wrong(soak.events[i][0]["payload"]) for i in plans if soak.events.get(i)}
    wrong = {i: why for i, why in wrong.items() if why}

    # Log lines: for each pod and line number, the generations that delivered it, in file order.
    deliveries: dict[tuple[int, int], list[int]] = defaultdict(list)
    misattributed = unexpected = 0
    with open(os.path.join(soak.workdir, "logs.jsonl"), encoding="utf-8") as handle:
        for raw in handle:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            match = _LINE.match(str(record.get("event", "")))
            if not match:
                continue
            pod, number = int(match.group(1)), int(match.group(2))
            if record.get("trigger_id") != pod:
                misattributed += 1
            if pod not in plans or not 1 <= number <= plans[pod].lines:
                unexpected += 1
                continue
            deliveries[(pod, number)].append(int(record.get("generation", 0)))
    expected_lines = sum(p.lines for p in plans.values())
    lines_lost = sum(
        1 for p in plans.values() for n in range(1, p.lines + 1) if (p.index, n) not in deliveries
    )
    repeated: Counter[str] = Counter()
    repeated_per_restart: Counter[tuple[int, int]] = Counter()  # (pod, generation that ended) -> lines
    for (pod, _), gens in deliveries.items():
        for previous, current in itertools.pairwise(gens):
            if current == previous:
                repeated["within one triggerer"] += 1
                continue
            ended = soak.generations.get(previous, "?")
            kind = "SIGKILL" if "SIGKILL" in ended else "SIGTERM" if ended == "SIGTERM" else ended
            repeated[f"after {kind}"] += 1
            repeated_per_restart[(pod, previous)] += 1
    sigkill_repeats = [
        n for (pod, gen), n in repeated_per_restart.items() if "SIGKILL" in soak.generations.get(gen, "")
    ]
    result = {
        "pods run": len(plans),
        "pods planned": len(soak.plans),
        "elapsed seconds": round(elapsed),
        "faults injected": dict(soak.faults) | {"total": sum(soak.faults.values())},
        "faults never met (still pending at the end)": pending_faults,
        "restarts survived": dict(soak.restarts) | {"total": sum(soak.restarts.values())},
        "pods lost (no event)": len(lost),
        "pods duplicated (two events)": len(duplicated),
        "pods with a wrong result": len(wrong),
        "orphaned pods (left in the cluster)": len(orphans),
        "log lines expected": expected_lines,
        "log lines delivered": sum(len(g) for g in deliveries.values()),
        "log lines lost": lines_lost,
        "log lines repeated": dict(repeated) | {"total": sum(repeated.values())},
        "log lines repeated per pod and SIGKILL, max / mean": [
            max(sigkill_repeats, default=0),
            round(sum(sigkill_repeats) / len(sigkill_repeats), 1) if sigkill_repeats else 0,
        ],
        "log lines misattributed / unexpected": [misattributed, unexpected],
        "create retries by the parent": soak.create_failures,
        "finalize retries by the parent": soak.finalize_failures,
        "details": {
            "lost": [plans[i].pod_name for i in lost][:20],
            "duplicated": [plans[i].pod_name for i in duplicated][:20],
            "wrong": {plans[i].pod_name: why for i, why in list(wrong.items())[:20]},
            "orphans": orphans[:20],
            "generations": soak.generations,
        },
    }
    return result


def print_report(result: dict[str, Any]) -> None:
    print("\n== kpo-async soak result ==")
    for key, value in result.items():
        if key == "details":
            continue
        print(f"{key:>48}: {value}")
    details = result["details"]
    for key in ("lost", "duplicated", "wrong", "orphans"):
        if details[key]:
            print(f"{key}: {details[key]}")


def ok(result: dict[str, Any]) -> bool:
    return not (
        result["pods lost (no event)"]
        or result["pods duplicated (two events)"]
        or result["pods with a wrong result"]
        or result["orphaned pods (left in the cluster)"]
        or result["log lines lost"]
        or result["pods run"] != result["pods planned"]
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kpo_async.testing.soak", description=__doc__.split("\n")[0])
    p.add_argument("--pods", type=int, default=500)
    p.add_argument("--restarts", type=int, default=20, help="triggerer restarts to aim for (at least)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--create-rate", type=float, default=3.5, help="pods created per second")
    p.add_argument("--min-seconds", type=float, default=10)
    p.add_argument("--max-seconds", type=float, default=60)
    p.add_argument("--fault-interval", type=float, default=1.5, help="mean seconds between injected faults")
    p.add_argument(
        "--reset-targets",
        default=",".join(RESET_TARGETS),
        help="requests whose connection may be reset mid-response (of watch, log, list, get)",
    )
    p.add_argument("--grace", type=float, default=240, help="how long past the last pod to wait for events")
    p.add_argument("--workdir", help="where the files go (default: a new temp dir)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--generation", type=int, default=1, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        return child_main(args)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="kpo-async-soak-airflow-"))
    result = asyncio.run(_parent(args))
    print_report(result)
    return 0 if ok(result) else 1


if __name__ == "__main__":
    sys.exit(main())
