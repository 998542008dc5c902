"""The cluster side of the benchmark: a fresh simulator process, the bench pods, an observer watch.

The observer is an independent watch (in the benchmark's parent process, not in the measured
mini triggerer) that records, at sub-millisecond resolution, when the API server first published
each pod's base container as terminated. The pod's ``finishedAt`` has one-second precision, too
coarse for a terminate-to-event latency, so the observer's timestamp is the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil
from kubernetes_asyncio.client import V1Pod

from kpo_async.api import open_response
from kpo_async.clients import ClusterClient
from kpo_async.identity import MANAGED_LABEL, TaskIdentity, label_safe
from kpo_async.pod_builder import PodArguments, build_pod
from kpo_async.testing.harness import SimProcess as HarnessSim
from kpo_async.testing.sim import BEHAVIOR_ANNOTATION

BENCH_DAG_ID = "kpo_async_bench"
BENCH_TASK_ID = "sleeper"
#: kwok's annotations on the real control plane (tools/kwok/stages.yaml, docs/real-control-plane.md).
KWOK_DURATION = "kwok.kpo-async.io/duration"
KWOK_PENDING = "kwok.kpo-async.io/pending"
KWOK_XCOM = "kwok.kpo-async.io/xcom"


class SimProcess:
    """The simulator process (`harness.SimProcess`, the one launcher), fresh for one design's run,
    with its CPU and memory readings for the benchmark."""

    def __init__(self, workdir: str, watch_history: int = 20000) -> None:
        self.workdir = workdir
        self.watch_history = watch_history
        self.process: HarnessSim | None = None
        self.ps: psutil.Process | None = None

    async def start(self) -> str:
        self.process = await asyncio.to_thread(
            HarnessSim, self.workdir, "--watch-history", str(self.watch_history)
        )
        self.ps = psutil.Process(self.process.pid)
        return self.process.kubeconfig_path

    @property
    def kubeconfig(self) -> str:
        return os.path.join(self.workdir, "kubeconfig")

    def cpu_seconds(self) -> float:
        if self.ps is None:
            return float("nan")
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20 if self.ps is not None else float("nan")

    async def stop(self) -> None:
        if self.process is not None:
            await asyncio.to_thread(self.process.stop)


# --- the pods ---------------------------------------------------------------------------------------


def pod_identity(run_id: str, index: int) -> TaskIdentity:
    """One mapped task instance per pod, as the operator would see it (labels/annotations match)."""
    return TaskIdentity(dag_id=BENCH_DAG_ID, task_id=BENCH_TASK_ID, run_id=run_id, map_index=index)


def bench_pod(
    run_id: str,
    index: int,
    namespace: str,
    *,
    duration: float,
    log_rate: float,
    xcom: bool,
) -> V1Pod:
    """The pod kpo-async's operator would create for this task instance, with the behaviour annotations.

    Both the simulator's behaviour annotation and kwok's duration annotation are set, so the same pod
    runs `duration` seconds (from container start) on either cluster, then exits 0.
    """
    behaviour: dict[str, Any] = {"duration_seconds": round(duration, 3), "exit_code": 0}
    if log_rate > 0:
        behaviour["log_lines_per_second"] = log_rate
    annotations = {
        BEHAVIOR_ANNOTATION: json.dumps(behaviour),
        KWOK_DURATION: f"{max(duration, 0.0):.3f}s",
    }
    if xcom:
        value = {"pod": index}
        behaviour["xcom"] = value
        annotations[BEHAVIOR_ANNOTATION] = json.dumps(behaviour)
        annotations[KWOK_XCOM] = json.dumps(value)
    # The simulator and kwok follow the annotations; a real node (tools/node.sh) runs this script, which
    # does the same: run `duration` seconds, write the XCom value, exit 0.
    script = f"echo working; sleep {max(duration, 0.0):.3f}"
    if xcom:
        script += f"; echo '{json.dumps({'pod': index})}' > /airflow/xcom/return.json"
    args = PodArguments(
        namespace=namespace,
        image="alpine:3.20",
        cmds=["sh", "-c", script],
        annotations=annotations,
        do_xcom_push=xcom,
    )
    pod = build_pod(args, identity=pod_identity(run_id, index))
    pod.metadata.finalizers = None  # deleted in bulk by `delete_pods`, not by a task's cleanup
    return pod


def run_selector(run_id: str) -> str:
    return f"{MANAGED_LABEL}=true,dag_id={BENCH_DAG_ID},run_id={label_safe(run_id)}"


@dataclass
class CreatedPod:
    name: str
    uid: str
    index: int
    created_at: float
    planned_end: float


async def create_pods(
    client: ClusterClient,
    namespace: str,
    run_id: str,
    n: int,
    *,
    end_at: float,
    end_spread: float,
    log_rate: float,
    xcom: bool,
    kwok_pending: float,
    concurrency: int = 50,
    seed: int = 5,
) -> list[CreatedPod]:
    """Create n pods that all end (base container exits 0) in [end_at, end_at + end_spread]."""
    rng = random.Random(seed)
    ends = [end_at + rng.uniform(0, end_spread) for _ in range(n)]
    semaphore = asyncio.Semaphore(concurrency)
    created: list[CreatedPod | None] = [None] * n

    async def one(i: int) -> None:
        async with semaphore:
            now = time.time()
            # The container starts shortly after the create (sim: ~0.3 s; kwok: its pending delay).
            body = bench_pod(
                run_id, i, namespace, duration=ends[i] - now - kwok_pending, log_rate=log_rate, xcom=xcom
            )
            for attempt in range(5):
                try:
                    response = await open_response(
                        client.core.create_namespaced_pod(namespace, body, _preload_content=False),
                        what="creating a benchmark pod",
                        verb="create",
                    )
                    data = json.loads(await response.read())
                    break
                except Exception:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.5 * (attempt + 1))
            created[i] = CreatedPod(data["metadata"]["name"], data["metadata"]["uid"], i, now, ends[i])

    await asyncio.gather(*(one(i) for i in range(n)))
    pods = [p for p in created if p is not None]
    if len({p.name for p in pods}) != n:
        raise RuntimeError("pod names collided; use another --run-id")
    return pods


async def delete_pods(client: ClusterClient, namespace: str, run_id: str) -> None:
    with contextlib.suppress(Exception):
        await client.core.delete_collection_namespaced_pod(
            namespace, label_selector=run_selector(run_id), grace_period_seconds=0
        )


# --- the observer -----------------------------------------------------------------------------------


@dataclass
class Observer:
    """A watch on the bench pods that timestamps each base container's termination as published."""

    client: ClusterClient
    namespace: str
    selector: str
    base: str = "base"
    running: set[str] = field(default_factory=set)
    terminated_at: dict[str, float] = field(default_factory=dict)
    finished_at: dict[str, str] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    #: (wall time, "<verb> <resource>") of every request the observer itself made.
    requests: list[tuple[float, str]] = field(default_factory=list)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                self.requests.append((time.time(), "list pods"))
                response = await open_response(
                    self.client.core.list_namespaced_pod(
                        self.namespace, label_selector=self.selector, _preload_content=False
                    ),
                    what="listing benchmark pods",
                    verb="list",
                )
                body = json.loads(await response.read())
                for item in body.get("items") or []:
                    self._see(item)
                rv = body["metadata"]["resourceVersion"]
                self.synced.set()
                while True:
                    rv = await self._watch(rv)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)

    async def _watch(self, rv: str) -> str:
        self.requests.append((time.time(), "watch pods"))
        response = await open_response(
            self.client.core.list_namespaced_pod(
                self.namespace,
                label_selector=self.selector,
                watch=True,
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=3600,
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            ),
            what="watching benchmark pods",
            verb="watch",
        )
        try:
            while True:
                line = await response.content.readline()
                if not line:
                    return rv
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise RuntimeError(f"watch error {obj.get('code')}")
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if event.get("type") in ("ADDED", "MODIFIED"):
                    self._see(obj)
        finally:
            response.release()

    def _see(self, pod: dict[str, Any]) -> None:
        now = time.time()
        name = pod["metadata"]["name"]
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != self.base:
                continue
            state = status.get("state") or {}
            if "running" in state:
                self.running.add(name)
            terminated = state.get("terminated")
            if terminated is not None and name not in self.terminated_at:
                self.terminated_at[name] = now
                self.finished_at[name] = terminated.get("finishedAt")
                self.exit_codes[name] = terminated.get("exitCode")
                self.running.discard(name)
        self.changed.set()

    def own_requests_between(self, start: float, end: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t, key in self.requests:
            if start <= t < end:
                counts[key] = counts.get(key, 0) + 1
        return counts
