"""Soak test: many pods, a triggerer killed again and again, random API faults, pods taken away.
Count what was lost.

    python -m kpo_async.testing.soak --pods 500 --restarts 20 --seed 1   # --evictions 60

The parent process

* starts the embedded cluster as its own process (`python -m kpo_async.testing.sim`);
* creates the pods itself, as the operator's `execute` would (`kpo_async.pod_builder.build_pod`, so
  labels and names are the operator's; `kpo_async.pods.create_pod`), each with a behaviour annotation
  (10-60 s, a few numbered log lines a second, an exit code, some with an XCom value; most after an
  init container that sleeps 3-10 s), and keeps each trigger's *original* serialized form
  (classpath + kwargs), as the metadata DB does; each task has a relaunch policy, held by a real
  `AsyncKubernetesPodOperator` (see `soak_evictions.POLICIES`);
* runs a "mini triggerer" child process (`--child`) that creates `PodTrigger`s from those serialized
  forms exactly as Airflow's triggerer does (import the classpath, call it with the kwargs, bind the
  trigger id into the log context, iterate `run()`, `cleanup()` in a finally) and writes every event
  and every log line the triggers emit (JSON lines, one write per line, so a SIGKILL loses nothing
  already emitted);
* kills the child at random times, with SIGTERM (the child cancels every trigger's task and awaits
  each `cleanup()`, like the real triggerer) or SIGKILL, and hands every not-yet-finished trigger's
  original kwargs to the next one (started beforehand as a standby, its imports done);
* injects random faults into the cluster over its control API all along (5xx, 429 with Retry-After,
  connections reset mid-response or mid-stream, watches closed early, 410 Gone, slow answers);
* takes `--evictions` pods away at random times, by the Eviction API or the kubelet, before or after
  their base container started;
* resumes each task once its trigger's event is recorded, as `execute_complete` would: a pod the
  cluster took away is replaced when the task's operator says so (`_why_not_relaunched`; the
  replacement named by `_Launch.mark`, created by `_adopt_or_create`, deferred with a new trigger),
  otherwise the pod is deleted; at the end it counts what is left.

It prints: pods run, faults injected, restarts survived (SIGTERM/SIGKILL), evictions (by kind, by
started or not), relaunches, pods lost (no event), duplicated (two events), two pods of one task alive
at once (seen by its own cluster-wide watch), tasks whose final result is not what their policy says,
orphaned pods (left in the cluster), log lines lost and repeated (attributed to the kind of restart
after which they were repeated). A JSON copy of the result is written to ``<workdir>/result.json``.
The exit status is 0 when nothing was lost, duplicated, wrong or orphaned, no two pods of one task
were alive at once, and every eviction asked for was made.
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
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from kpo_async.finish import finish_pod
from kpo_async.testing.soak_evictions import (
    POLICIES,
    POLICY_WEIGHTS,
    Eviction,
    PodWatch,
    Policy,
    count_log_lines,
    expected_result,
    policy_operator,
    wrong_result,
)

BEHAVIOR_ANNOTATION = "sim.kpo-async.io/behavior"
TRIGGER_CLASSPATH = "triggers.pod.PodTrigger"
NAMESPACE = "default"
DAG_ID = "soak"
_LINE = re.compile(r"^\[base\] soak-(\d+)(?:-r(\d+))? line (\d+)$")


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
    #: Seconds its init container sleeps before the base container starts (0: no init container).
    init_seconds: float = 0.0
    policy: Policy = POLICIES[0]
    #: Its pods, by relaunch (the first pod, then each replacement), and what its task ended with.
    pods: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    operator: Any = None

    @property
    def pod_name(self) -> str:
        return self.pods[-1] if self.pods else ""

    @property
    def lines(self) -> int:
        return math.floor(self.duration * self.rate + 1e-9)  # as the simulator computes it

    def behavior(self, relaunch: int = 0) -> dict[str, Any]:
        pod = f"soak-{self.index}" + (f"-r{relaunch}" if relaunch else "")
        spec: dict[str, Any] = {
            "duration_seconds": self.duration,
            "log_lines_per_second": self.rate,
            "log_line": f"{pod} line {{i}}",
            "exit_code": self.exit_code,
        }
        if self.do_xcom:
            spec["xcom"] = self.xcom
        return spec


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
                # Most pods start late (an init container), so that some are evicted before they start.
                init_seconds=round(rng.uniform(3, 10), 1) if rng.random() < 0.7 else 0.0,
                policy=rng.choices(POLICIES, weights=POLICY_WEIGHTS)[0],
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
    await asyncio.gather(reader, return_exceptions=True)  # it may still add a trigger it had read
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    await stop_shared_watchers()
    await close_shared_clients()


# ------------------------------------------------------------------------------------------------
# the parent
# ------------------------------------------------------------------------------------------------


@dataclass
class Deferral:
    """One deferral of a task, as the metadata DB stores it: the trigger that follows one of its
    pods (the first, or a replacement), under a trigger id of its own."""

    trigger_id: int
    plan: PodPlan
    relaunch: int
    kwargs: dict[str, Any]

    @property
    def pod_name(self) -> str:
        return str(self.kwargs["pod_name"])


class Child:
    """One incarnation of the mini triggerer."""

    def __init__(self, generation: int, proc: asyncio.subprocess.Process) -> None:
        self.generation = generation
        self.proc = proc
        self.sent: set[int] = set()
        self.ended_by = "running"

    async def send(self, deferrals: list[Deferral]) -> None:
        lines = [
            json.dumps({"id": d.trigger_id, "classpath": TRIGGER_CLASSPATH, "kwargs": d.kwargs}) + "\n"
            for d in deferrals
            if d.trigger_id not in self.sent
        ]
        if not lines or self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("".join(lines).encode())
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return  # it died: the next incarnation gets them
        self.sent.update(d.trigger_id for d in deferrals)


@dataclass
class Soak:
    args: argparse.Namespace
    workdir: str
    kubeconfig: str
    plans: list[PodPlan]
    rng: random.Random
    events: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    deferrals: dict[int, Deferral] = field(default_factory=dict)
    generations: dict[int, str] = field(default_factory=dict)
    #: When each triggerer was ready and when it was stopped (None: still running).
    triggerer_up: list[list[float | None]] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    created: list[PodPlan] = field(default_factory=list)
    evictions: list[Eviction] = field(default_factory=list)
    relaunches: int = 0
    watch: PodWatch | None = None
    create_failures: int = 0
    finalize_failures: int = 0
    _events_offset: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    child: Child | None = None
    _finalizers: list[asyncio.Task[None]] = field(default_factory=list)
    _to_resume: list[int] = field(default_factory=list)
    _spawned: list[asyncio.subprocess.Process] = field(default_factory=list)
    _finalize_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))

    # -- the triggerer's life and death ---------------------------------------------------------
    async def start_child(self, generation: int) -> Child:
        """Start the mini triggerer and hand it every unfinished trigger once it is ready."""
        child = await self.spawn_child(generation)
        await self.activate(child)
        return child

    async def spawn_child(self, generation: int) -> Child:
        """A mini triggerer process with its imports done, not given any trigger yet."""
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
        self._spawned.append(proc)
        assert proc.stdout is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.stdout.readline(), 120)
        return Child(generation, proc)

    async def activate(self, child: Child) -> None:
        self.generations[child.generation] = "running"
        self.triggerer_up.append([time.time(), None])
        await child.send(self.unfinished())

    def unfinished(self) -> list[Deferral]:
        return [d for d in self.deferrals.values() if not self.events.get(d.trigger_id)]

    def pending(self) -> list[PodPlan]:
        """Tasks that have not ended (their last pod's event not recorded, or not acted upon)."""
        return [p for p in self.created if p.result is None]

    def triggerer_running(self, at: float) -> bool:
        return any(start <= at and (end is None or at <= end) for start, end in self.triggerer_up)

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
        if self.triggerer_up and self.triggerer_up[-1][1] is None:
            self.triggerer_up[-1][1] = time.time()
        child.ended_by = how
        self.generations[child.generation] = how
        self.read_events()

    async def killer(self, expected_end: float) -> None:
        """Kill the triggerer at random times, then start a new one, spreading the restarts asked for
        over the expected run; each triggerer lives at least 3 s after it is ready.

        The next two triggerers are started as standbys (their imports done) while the current one
        runs: on 2 shared cores the imports take 8-12 s, which would leave no triggerer most of the
        run and fit fewer restarts than asked."""
        generation = self.child.generation if self.child else 1
        standbys = deque(asyncio.create_task(self.spawn_child(generation + n)) for n in (1, 2))
        overhead = 2.0  # kill + restart, measured below
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
                self.child = await standbys.popleft()
                await self.activate(self.child)
                standbys.append(asyncio.create_task(self.spawn_child(generation + 2)))
                overhead = 0.5 * overhead + 0.5 * (time.monotonic() - began)

    async def stop_standby(self) -> None:
        """Kill the processes started as standbys that never became the triggerer."""
        active = self.child.proc if self.child is not None else None
        for proc in self._spawned:
            if proc is not active and proc.returncode is None:
                proc.kill()
                await proc.wait()

    # -- pods -----------------------------------------------------------------------------------
    def pod_request(self, plan: PodPlan, relaunch: int) -> Any:
        """The pod the operator's `build_pod` makes for this task (with the soak's behaviour)."""
        from kpo_async.identity import TaskIdentity
        from kpo_async.pod_builder import PodArguments, build_pod

        identity = TaskIdentity(dag_id=DAG_ID, task_id=f"pod-{plan.index}", run_id=f"soak-{self.args.seed}")
        prepare = {
            "name": "prepare",
            "image": "alpine:3.20",
            "command": ["sh", "-c", f"sleep {plan.init_seconds}"],
        }
        return build_pod(
            PodArguments(
                namespace=NAMESPACE,
                name=f"soak-{plan.index}",
                image="alpine:3.20",
                annotations={BEHAVIOR_ANNOTATION: json.dumps(plan.behavior(relaunch))},
                init_containers=[prepare] if plan.init_seconds else None,
                do_xcom_push=plan.do_xcom,
            ),
            identity=identity,
        )

    def defer(self, plan: PodPlan, relaunch: int, pod_name: str) -> None:
        """What the operator defers with (see AsyncKubernetesPodOperator.execute), serialized as the
        metadata DB stores it, never changed afterwards; the syncer hands it to the triggerer."""
        from triggers.pod import PodTrigger

        _, kwargs = PodTrigger(
            pod_name=pod_name,
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
            startup_deadline=time.time() + 120,
            execution_deadline=None,
            on_kill_action="delete_pod",
            fallback_poll_seconds=30.0,
        ).serialize()
        plan.pods.append(pod_name)
        # The first pod's trigger id is the task's index; a replacement's, the next free one.
        trigger_id = plan.index if relaunch == 0 else len(self.plans) + len(self.deferrals)
        self.deferrals[trigger_id] = Deferral(trigger_id, plan, relaunch, json.loads(json.dumps(kwargs)))

    async def creator(self, client: Any) -> None:
        from kpo_async.pods import create_pod, read_pod

        next_at = time.monotonic()
        for plan in self.plans:
            plan.operator = policy_operator(plan.policy, f"pod-{plan.index}", plan.do_xcom, self.kubeconfig)
            pod = self.pod_request(plan, 0)
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
            self.defer(plan, 0, state.name)
            self.created.append(plan)
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
                self._to_resume.append(record["trigger_id"])
        return new

    def schedule_resumes(self, client: Any) -> None:
        """Each task whose event is recorded resumes on a worker (`execute_complete`)."""
        while self._to_resume:
            deferral = self.deferrals[self._to_resume.pop(0)]
            payload = self.events[deferral.trigger_id][0]["payload"]
            task = asyncio.create_task(self.resume(client, deferral, payload))
            task.add_done_callback(_report_crash)  # a resume that raised would leave its task unended
            self._finalizers.append(task)

    async def event_tailer(self, client: Any) -> None:
        while True:
            async with self._lock:
                self.read_events()
            self.schedule_resumes(client)
            await asyncio.sleep(0.5)

    async def resume(self, client: Any, deferral: Deferral, payload: dict[str, Any]) -> None:
        """`execute_complete` on a worker: a pod the cluster took away is replaced when the task's
        operator says so (its own `_why_not_relaunched`), else the task ends and its pod is cleaned up."""
        from kpo_async.outcome import PodOutcome

        plan, outcome = deferral.plan, PodOutcome.from_payload(payload)
        async with self._finalize_slots:
            eviction = self.eviction_of(deferral.pod_name)
            if eviction is not None and eviction.kind == "kubelet" and outcome.disruption:
                eviction.lines_printed = await count_log_lines(client, deferral.pod_name, NAMESPACE)
            refused = plan.operator._why_not_relaunched(outcome) if outcome.disruption else None
            if outcome.disruption and refused is None:
                await self.retrying(
                    f"cleanup of {deferral.pod_name}",
                    lambda: finish_pod(
                        client, outcome, plan.operator._finish_settings(), plan.operator.log, report=False
                    ),
                )
                await self.relaunch(client, plan, outcome)
                return
            message = f"{outcome.message}; not relaunched: {refused}" if refused else outcome.message
            plan.result = {**payload, "message": message}
        await self.finalize(client, deferral.pod_name)

    async def relaunch(self, client: Any, plan: PodPlan, outcome: Any) -> None:
        """As `execute_complete` -> `_launch(_Launch(n))`: the replacement, named and annotated by
        `_Launch.mark`, created (or adopted) by the operator's own `_adopt_or_create`, then deferred."""
        from kpo_async.identity import TaskIdentity
        from kpo_async.operator import _Launch

        relaunch = outcome.relaunch + 1
        pod = self.pod_request(plan, relaunch)
        _Launch(relaunch, replaces=outcome).mark(
            pod, logging.getLogger("soak"), plan.policy.disruption_relaunches
        )
        identity = TaskIdentity(dag_id=DAG_ID, task_id=f"pod-{plan.index}", run_id=f"soak-{self.args.seed}")
        state = await self.retrying(
            f"relaunch of {pod.metadata.name}", lambda: plan.operator._adopt_or_create(client, pod, identity)
        )
        if state is None:
            plan.result = {"status": "error", "message": f"could not create {pod.metadata.name}"}
            return
        self.relaunches += 1
        self.defer(plan, relaunch, state.name)

    async def retrying(self, what: str, call: Any) -> Any:
        for attempt in range(5):
            try:
                return await call()
            except Exception as exc:
                self.finalize_failures += 1
                print(f"  {what} failed (attempt {attempt + 1}): {exc}", flush=True)
                await asyncio.sleep(1)
        return None

    async def finalize(self, client: Any, pod_name: str) -> None:
        """execute_complete's step on a worker: delete the pod (on_finish_action='delete_pod')."""
        from kpo_async.pods import delete_pod

        async with self._finalize_slots:
            await self.retrying(f"finalize of {pod_name}", lambda: delete_pod(client, NAMESPACE, pod_name))

    # -- evictions ------------------------------------------------------------------------------
    def eviction_of(self, pod_name: str) -> Eviction | None:
        return next((e for e in self.evictions if e.pod_name == pod_name), None)

    def candidates(self, aimed_at: str) -> list[Deferral]:
        """Pods the evictor may take away now: their task's current pod, not evicted yet, its
        trigger's event not recorded, and well inside the stage aimed at (so that the eviction
        lands in it: an init container with >= 2 s left, or a base container with >= 4 s left)."""
        assert self.watch is not None
        now, found = time.time(), []
        for deferral in self.unfinished():
            name, plan = deferral.pod_name, deferral.plan
            if plan.pod_name != name or self.eviction_of(name) is not None:
                continue
            pod = self.watch.alive(name)
            if pod is None:
                continue
            if aimed_at == "not started":
                since = self.watch.running_since.get((name, "prepare"))
                if since is not None and now - since < plan.init_seconds - 2:
                    found.append(deferral)
            else:
                since = self.watch.running_since.get((name, "base"))
                if since is not None and now - since < plan.duration - 4:
                    found.append(deferral)
        return found

    async def evictor(self, client: Any, ctl: Any, until: float) -> None:
        """Take `--evictions` pods away at random times while pods are created: half by the Eviction
        API (a drain), half by the kubelet (node pressure); half before the base container started."""
        started = time.monotonic()
        times = sorted(self.rng.uniform(8, max(10.0, until)) for _ in range(self.args.evictions))
        for at in times:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            kind = self.rng.choice(["eviction-api", "kubelet"])
            aimed_at = self.rng.choice(["not started", "started"])
            for _ in range(60):  # until a pod in that stage exists; the other stage after a while
                found = self.candidates(aimed_at)
                replacements = [d for d in found if d.relaunch > 0]
                if replacements and self.rng.random() < 0.4:  # to use up some tasks' relaunches
                    found = replacements
                if found:
                    await self.evict(client, ctl, self.rng.choice(found), kind, aimed_at)
                    break
                await asyncio.sleep(0.5)
                if _ == 30:
                    aimed_at = "started" if aimed_at == "not started" else "not started"

    async def evict(self, client: Any, ctl: Any, deferral: Deferral, kind: str, aimed_at: str) -> None:
        name = deferral.pod_name
        eviction = Eviction(
            deferral.plan.index,
            name,
            deferral.relaunch,
            kind,
            aimed_at,
            time.time(),
            self.triggerer_running(time.time()),
        )
        try:
            if kind == "kubelet":
                await ctl.evict(NAMESPACE, name)
            else:
                if aimed_at == "started":  # the log goes with the pod: count what it has printed
                    eviction.lines_printed = await count_log_lines(client, name, NAMESPACE)
                body = {
                    "apiVersion": "policy/v1",
                    "kind": "Eviction",
                    "metadata": {"name": name, "namespace": NAMESPACE},
                }
                await client.core.create_namespaced_pod_eviction(
                    name, NAMESPACE, body, _preload_content=False
                )
        except Exception as exc:
            print(f"  eviction of {name} ({kind}) failed: {exc}"[:300], flush=True)
            return
        self.evictions.append(eviction)

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
            done = len(self.created) - len(self.pending())
            print(
                f"  [{time.monotonic() - started:5.0f}s] created {len(self.created)}/{len(self.plans)}, "
                f"finished {done}, restarts {sum(self.restarts.values())} ({dict(self.restarts)}), "
                f"faults {sum(self.faults.values())}, evictions {len(self.evictions)}, "
                f"relaunches {self.relaunches}",
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
    soak.watch = PodWatch(client, f"dag_id={DAG_ID}")
    watching = asyncio.create_task(soak.watch.run())
    expected_span = args.pods / args.create_rate + args.max_seconds
    print(
        f"soak: {args.pods} pods over ~{expected_span:.0f}s, >= {args.restarts} triggerer restarts, "
        f"{args.evictions} evictions, random API faults; workdir {workdir}",
        flush=True,
    )
    started = time.monotonic()
    try:
        await asyncio.wait_for(soak.watch.synced.wait(), 60)
        soak.child = await soak.start_child(1)
        pending_faults = await _run(soak, client, ctl, started + expected_span)
        # A task whose trigger never fired would time out and its pod be deleted by Airflow's
        # cleanup: do that for the lost ones, then count what is really left.
        for plan in soak.pending():
            await soak.finalize(client, plan.pod_name)
        orphans = await _remaining_pods(client, wait=60)
        await asyncio.sleep(1)  # the watch's last events
        result = report(soak, orphans, pending_faults, time.monotonic() - started)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        if soak.child is not None and soak.child.proc.returncode is None:
            soak.child.proc.kill()
            await soak.child.proc.wait()
        await soak.stop_standby()
        await ctl.close()
        await client.close()
        await asyncio.to_thread(sim.stop)
    with open(os.path.join(workdir, "result.json"), "w") as handle:  # noqa: ASYNC230
        json.dump(result, handle, indent=2, default=str)
    return result


async def _run(soak: Soak, client: Any, ctl: Any, expected_end: float) -> int:
    """Create the pods amid kills, faults and evictions, wait for every task to end, stop the
    triggerer; how many injected faults were never met."""
    args = soak.args
    background = [
        asyncio.create_task(soak.event_tailer(client)),
        # The restarts are spread over the creations and half the longest run after them, while pods run.
        asyncio.create_task(soak.killer(expected_end - args.max_seconds / 2)),
        asyncio.create_task(soak.injector(ctl)),
        asyncio.create_task(soak.evictor(client, ctl, args.pods / args.create_rate)),
        asyncio.create_task(soak.progress()),
        asyncio.create_task(soak.syncer()),
    ]
    try:
        await soak.creator(client)
        deadline = time.monotonic() + args.max_seconds + args.grace
        while time.monotonic() < deadline and soak.pending():  # noqa: ASYNC110 - polls a file
            await asyncio.sleep(1)
        for task in background[1:4]:  # no more kills, faults nor evictions
            task.cancel()
        await asyncio.gather(*background[1:4], return_exceptions=True)
        async with soak._lock:
            assert soak.child is not None
            await soak.stop_child(soak.child, "final")
        await asyncio.sleep(1)
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    soak.read_events()
    soak.schedule_resumes(client)
    await asyncio.gather(*soak._finalizers)
    pending_faults = len(await ctl.faults())
    await ctl.clear_faults()
    return pending_faults


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        print(f"  resume crashed: {task.exception()!r}", flush=True)


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


def _deliveries(soak: Soak) -> tuple[dict[tuple[int, int, int], list[int]], int, int]:
    """For each (task, relaunch, line number), the triggerer generations that delivered it, in file
    order; and how many lines came under another pod's trigger id, or were not expected at all."""
    deliveries: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    misattributed = unexpected = 0
    plans = {p.index: p for p in soak.created}
    with open(os.path.join(soak.workdir, "logs.jsonl"), encoding="utf-8") as handle:
        for raw in handle:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            # Lines held back by the record budget (kpo_async/log_records.py) come as one record.
            for line in str(record.get("event", "")).split("\n"):
                match = _LINE.match(line)
                if not match:
                    continue
                pod, relaunch, number = int(match.group(1)), int(match.group(2) or 0), int(match.group(3))
                deferral = soak.deferrals.get(record.get("trigger_id", -1))
                if deferral is None or (deferral.plan.index, deferral.relaunch) != (pod, relaunch):
                    misattributed += 1
                if (
                    pod not in plans
                    or not 1 <= number <= plans[pod].lines
                    or relaunch >= len(plans[pod].pods)
                ):
                    unexpected += 1
                    continue
                deliveries[(pod, relaunch, number)].append(int(record.get("generation", 0)))
    return deliveries, misattributed, unexpected


def _lines_lost(soak: Soak, deliveries: dict[tuple[int, int, int], list[int]]) -> tuple[int, int, int]:
    """Lines expected, lines lost, and lines of pods the Eviction API deleted that no trigger read
    before the log went with the pod (not a loss: nothing could read them any more).

    A pod that ran to its end must deliver every line; a pod the kubelet evicted (it stays until its
    task cleans it up) every line it had printed; a pod the Eviction API deleted, every line up to
    the last one delivered (no gap)."""
    expected = lost = gone = 0
    for deferral in soak.deferrals.values():
        plan, relaunch = deferral.plan, deferral.relaunch
        delivered = {n for (p, r, n) in deliveries if (p, r) == (plan.index, relaunch)}
        eviction = soak.eviction_of(deferral.pod_name)
        if eviction is None:
            must = plan.lines
        elif eviction.kind == "kubelet" and eviction.lines_printed is not None:
            must = min(plan.lines, eviction.lines_printed)
        else:
            must = max(delivered, default=0)
            gone += max(0, (eviction.lines_printed or 0) - must)
        expected += must
        lost += sum(1 for n in range(1, must + 1) if n not in delivered)
    return expected, lost, gone


def _eviction_figures(soak: Soak) -> dict[str, Any]:
    assert soak.watch is not None
    for eviction in soak.evictions:
        eviction.started = eviction.pod_name in soak.watch.ever_started
    return {
        "total": len(soak.evictions),
        "by kind": dict(Counter(e.kind for e in soak.evictions)),
        "base container started / not started (as the watch saw it)": [
            sum(1 for e in soak.evictions if e.started),
            sum(1 for e in soak.evictions if not e.started),
        ],
        "while no triggerer ran": sum(1 for e in soak.evictions if not e.triggerer_running),
    }


def _unseen_evictions(soak: Soak) -> list[str]:
    """Pods evicted whose trigger's event names no disruption: the trigger never saw the pod being
    taken away (the Eviction API removed it while no trigger followed it)."""
    unseen = []
    for eviction in soak.evictions:
        deferral = next((d for d in soak.deferrals.values() if d.pod_name == eviction.pod_name), None)
        events = soak.events.get(deferral.trigger_id, []) if deferral else []
        if events and not events[0]["payload"].get("disruption"):
            unseen.append(eviction.pod_name)
    return unseen


def _outcomes(soak: Soak) -> tuple[dict[int, str], Counter[str]]:
    """Tasks whose final result is not what their policy says (and why); results by kind."""
    wrong: dict[int, str] = {}
    kinds: Counter[str] = Counter()
    for plan in soak.created:
        evicted = {e.relaunch: e for e in soak.evictions if e.plan == plan.index}
        expected = expected_result(plan, evicted)
        if expected.refusal:
            kinds[f"failed naming the disruption ({expected.refusal})"] += 1
        else:
            kinds[expected.status + (" after a relaunch" if expected.pods > 1 else "")] += 1
        why = wrong_result(expected, len(plan.pods), plan.result)
        if why:
            wrong[plan.index] = why
    return wrong, kinds


def report(soak: Soak, orphans: list[str], pending_faults: int, elapsed: float) -> dict[str, Any]:
    assert soak.watch is not None
    plans = {p.index: p for p in soak.created}
    lost = sorted(i for i in soak.deferrals if not soak.events.get(i))
    duplicated = sorted(i for i in soak.deferrals if len(soak.events.get(i, [])) > 1)
    evictions = _eviction_figures(soak)
    wrong, results = _outcomes(soak)
    unseen = _unseen_evictions(soak)
    deliveries, misattributed, unexpected = _deliveries(soak)
    expected_lines, lines_lost, lines_gone = _lines_lost(soak, deliveries)
    repeated: Counter[str] = Counter()
    repeated_per_restart: Counter[tuple[int, int]] = Counter()  # (pod, generation that ended) -> lines
    for (pod, _, _), gens in deliveries.items():
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
        "pods created (first pods and replacements)": len(soak.deferrals),
        "elapsed seconds": round(elapsed),
        "faults injected": dict(soak.faults) | {"total": sum(soak.faults.values())},
        "faults never met (still pending at the end)": pending_faults,
        "restarts survived": dict(soak.restarts) | {"total": sum(soak.restarts.values())},
        "evictions": evictions,
        "evictions asked": soak.args.evictions,
        "relaunches made": soak.relaunches,
        "tasks by policy": dict(Counter(p.policy.name for p in plans.values())),
        "task results (as their policy says)": dict(results),
        "pods lost (no event)": len(lost),
        "pods duplicated (two events)": len(duplicated),
        "two pods of one task alive at once": len(soak.watch.overlaps),
        "tasks with a wrong outcome": len(wrong),
        "evicted pods whose trigger never saw the disruption": len(unseen),
        "orphaned pods (left in the cluster)": len(orphans),
        "log lines expected": expected_lines,
        "log lines delivered": sum(len(g) for g in deliveries.values()),
        "log lines lost": lines_lost,
        "log lines gone with a pod the Eviction API deleted before a trigger read them": lines_gone,
        "log lines repeated": dict(repeated) | {"total": sum(repeated.values())},
        "log lines repeated per pod and SIGKILL, max / mean": [
            max(sigkill_repeats, default=0),
            round(sum(sigkill_repeats) / len(sigkill_repeats), 1) if sigkill_repeats else 0,
        ],
        "log lines misattributed / unexpected": [misattributed, unexpected],
        "watch re-lists (moments not seen)": soak.watch.relists,
        "create retries by the parent": soak.create_failures,
        "finalize retries by the parent": soak.finalize_failures,
        "details": {
            "lost": [soak.deferrals[i].pod_name for i in lost][:20],
            "duplicated": [soak.deferrals[i].pod_name for i in duplicated][:20],
            "wrong": {plans[i].pod_name: why for i, why in list(wrong.items())[:20]},
            "two alive": soak.watch.overlaps[:20],
            "evicted, disruption unseen": unseen,
            "orphans": orphans[:20],
            "generations": soak.generations,
            "evictions": [vars(e) for e in soak.evictions],
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
    for key in ("lost", "duplicated", "wrong", "two alive", "orphans"):
        if details[key]:
            print(f"{key}: {details[key]}")


def ok(result: dict[str, Any]) -> bool:
    return not (
        result["pods lost (no event)"]
        or result["pods duplicated (two events)"]
        or result["two pods of one task alive at once"]
        or result["tasks with a wrong outcome"]
        or result["orphaned pods (left in the cluster)"]
        or result["log lines lost"]
        or result["pods run"] != result["pods planned"]
        or result["evictions"]["total"] < result["evictions asked"]
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kpo_async.testing.soak", description=__doc__.split("\n")[0])
    p.add_argument("--pods", type=int, default=500)
    p.add_argument("--restarts", type=int, default=20, help="triggerer restarts to aim for (at least)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--create-rate", type=float, default=3.5, help="pods created per second")
    p.add_argument("--min-seconds", type=float, default=10)
    p.add_argument("--max-seconds", type=float, default=60)
    p.add_argument(
        "--evictions",
        type=int,
        default=60,
        help="pods to take away (Eviction API or kubelet, before or after their base container started)",
    )
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
