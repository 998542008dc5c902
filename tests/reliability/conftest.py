"""Fixtures for the reliability suite: the operator and the trigger end to end against the embedded
cluster over loopback (real HTTP and WebSocket), with faults injected into the cluster.

`RequestLog` is the simulator's request counter with a timestamp per request, so tests can measure
how far apart retried requests were and how many requests a persistent failure caused.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from kpo_async.identity import TASK_SEEN_FINALIZER
from kpo_async.testing import logcapture
from kpo_async.testing.harness import (
    FakeTI,
    SimProcess,
    behavior,
    context_for,
    first_event,
    live_pods,
    make_operator,
    resume,
    run_deferred,
    run_task,
    run_trigger,
    stored_kwargs,
    submit,
    trigger_from,
)
from kpo_async.testing.procs import wait_until
from kpo_async.testing.sim import SimCluster, SimConfig
from kpo_async.testing.sim.stats import Stats

# The Airflow-like drive of a task comes from the one harness; re-exported for the suite's tests.
__all__ = [
    "FakeTI",
    "behavior",
    "context_for",
    "first_event",
    "live_pods",
    "make_operator",
    "resume",
    "run_deferred",
    "run_task",
    "run_trigger",
    "stored_kwargs",
    "submit",
    "trigger_from",
    "wait_until",
]
#: Kubelet delays short enough for a fast suite (script sleeps and behaviour durations are not scaled).
FAST = {"sandbox_delay": (0.01, 0.03), "pull_delay": 0.02, "bookmark_interval": 0.5}


class RequestLog(Stats):
    """The simulator's request counter, also remembering when each request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[tuple[float, str]] = []
        self._entries_lock = threading.Lock()

    def count(self, key: str) -> None:
        super().count(key)
        with self._entries_lock:
            self.entries.append((time.monotonic(), key))

    def times(self, key: str, since: float = 0.0) -> list[float]:
        with self._entries_lock:
            return [t for t, k in self.entries if k == key and t >= since]

    def count_since(self, key: str, since: float, until: float | None = None) -> int:
        with self._entries_lock:
            return sum(
                1 for t, k in self.entries if k == key and t >= since and (until is None or t <= until)
            )


def new_cluster(**config: Any) -> SimCluster:
    cluster = SimCluster(SimConfig(**{**FAST, **config}))
    cluster.stats = RequestLog()  # before start: the API handlers are given this object
    return cluster


@pytest.fixture(scope="module")
def sim() -> Iterator[SimCluster]:
    """One embedded cluster per module, on its own thread; faults are cleared after every test."""
    with new_cluster().in_thread() as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _clear_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").faults.clear()


# -- looking at the cluster from outside ------------------------------------------------------------


async def _api(sim: SimCluster):
    return await config.new_client_from_config(config_file=sim.kubeconfig_path)


def all_pods(sim: SimCluster, prefix: str = "", namespace: str = "default") -> list[str]:
    """Names of every pod, including those still terminating."""

    async def go() -> list[str]:
        api = await _api(sim)
        async with api:
            pods = await client.CoreV1Api(api).list_namespaced_pod(namespace)
            return [p.metadata.name for p in pods.items if p.metadata.name.startswith(prefix)]

    return asyncio.run(go())


def delete_now(sim: SimCluster, name: str, namespace: str = "default") -> None:
    """Force-delete the pod so that it is gone at once: kpo-async's finalizer removed, as a person
    who wants it gone does, then deleted with grace period 0."""

    async def go() -> None:
        api = await _api(sim)
        async with api:
            v1 = client.CoreV1Api(api)
            release = {"metadata": {"$deleteFromPrimitiveList/finalizers": [TASK_SEEN_FINALIZER]}}
            strategic = "application/strategic-merge-patch+json"
            await v1.patch_namespaced_pod(name, namespace, release, _content_type=strategic)
            await v1.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

    asyncio.run(go())


def read_pod(sim: SimCluster, name: str, namespace: str = "default") -> dict[str, Any] | None:
    async def go() -> dict[str, Any] | None:
        api = await _api(sim)
        async with api:
            try:
                pod = await client.CoreV1Api(api).read_namespaced_pod(name, namespace)
            except client.ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return api.sanitize_for_serialization(pod)

    return asyncio.run(go())


def pod_lines(logs: list[dict[str, Any]], container: str = "base") -> list[str]:
    """The pod log lines the trigger delivered, from structlog's captured events."""
    return logcapture.pod_lines(logs, container)


def numbered(count: int, template: str = "line {i}") -> list[str]:
    return [template.replace("{i}", str(i)) for i in range(1, count + 1)]


@pytest.fixture
def cleanup_pods(sim: SimCluster) -> Iterator[list[str]]:
    """Name prefixes whose pods are force-deleted after the test (for tests that expect a leak)."""
    prefixes: list[str] = []
    yield prefixes
    for prefix in prefixes:
        for name in all_pods(sim, prefix):
            try:
                delete_now(sim, name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture(scope="module")
def sim_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    process = SimProcess(str(tmp_path_factory.mktemp("sim")))
    try:
        yield process
    finally:
        process.stop()


def _short_jitter_seed() -> int:
    """A seed for `random` under which `kpo_async.retry`'s 7 jittered sleeps are short (about 2 s in all)."""
    from kpo_async.retry import ATTEMPTS, BACKOFF_BASE, BACKOFF_CAP

    best, best_total = 0, float("inf")
    for seed in range(2000):
        rng = random.Random(seed)
        total = sum(
            rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)) for attempt in range(1, ATTEMPTS)
        )
        if 2.0 <= total < best_total:
            best, best_total = seed, total
    return best


_SHORT_JITTER_SEED = _short_jitter_seed()


@contextlib.contextmanager
def short_jitter() -> Iterator[None]:
    """Seed the jitter of `kpo_async.retry` so that exhausting its attempts takes ~2 s, not ~16 s.

    The attempts, backoff and error are the real ones; only the random draws are made reproducible.
    """
    random.seed(_SHORT_JITTER_SEED)
    try:
        yield
    finally:
        random.seed()
