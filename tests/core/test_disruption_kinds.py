"""Each way the cluster takes a pod away, as the embedded cluster plays it (the Eviction API, the
scheduler's preemption, a lost node that comes back or not, a deleted node's pod GC), and what the
task does: a pod that had not started is relaunched; a started one fails the try naming the
disruption; a pod that may still run on a lost node is never replaced. The kubelet's eviction and
the policy arguments are in test_disruptions.py. This module's cluster is its own: the tests change
its node."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from kpo_async import monitor
from kpo_async.errors import PodFailedError
from kpo_async.testing.harness import FakeTI, behavior, submit
from kpo_async.testing.logcapture import capture_logs
from tests.core.test_disruptions import events, finish, pod, running, slow_start_operator


def api_call(sim: Any, action: Callable[[client.ApiClient], Any]) -> Any:
    async def go() -> Any:
        api = await config.new_client_from_config(config_file=sim.kubeconfig_path)
        async with api:
            return await action(api)

    return asyncio.run(go())


def evict_by_api(sim: Any, name: str) -> None:
    body = {"metadata": {"name": name, "namespace": "default"}}
    api_call(sim, lambda api: client.CoreV1Api(api).create_namespaced_pod_eviction(name, "default", body))


def when(
    sim: Any, name: str, ready: Callable[[dict[str, Any]], bool], act: Callable[[], Any]
) -> threading.Thread:
    """In the background: once pod `name` satisfies `ready`, `act()`."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = pod(sim, name)
            if body is not None and ready(body):
                act()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def run_with(
    sim: Any, op: Any, task_id: str, ready: Callable[[dict[str, Any]], bool], act: Callable[[str], Any]
) -> tuple[Any, str, list[str]]:
    """Run the task; once its first pod satisfies `ready`, `act(pod name)`. The result (or the
    exception), the first pod's name and the task log."""
    ti = FakeTI(task_id)
    deferred = submit(op, ti)
    first = deferred.trigger.pod_name
    thread = when(sim, first, ready, lambda: act(first))
    with capture_logs() as logs:
        try:
            result: Any = finish(op, ti, deferred, timeout=120)[0]
        except PodFailedError as exc:
            result = exc
    thread.join(timeout=40)
    return result, first, events(logs)


@pytest.mark.parametrize("started", [False, True], ids=["not-started", "started"])
def test_the_eviction_api(sim_thread, started: bool) -> None:
    task_id = f"drained-{'late' if started else 'early'}"
    op = slow_start_operator(sim_thread, task_id)
    ready = running("base" if started else "prepare")
    result, first, said = run_with(
        sim_thread, op, task_id, ready, lambda name: evict_by_api(sim_thread, name)
    )
    cause = f"pod default/{first} was evicted by the Eviction API (DisruptionTarget: EvictionByEvictionAPI)"
    if started:
        assert isinstance(result, PodFailedError) and cause in str(result), result
        assert "not relaunched: its base container had started" in str(result)
    else:
        assert result == {"rows": 7}
        assert f"{cause}; relaunch 1 of 2 as pod default/{first}-r1" in said, said
    assert pod(sim_thread, first) is None and pod(sim_thread, f"{first}-r1") is None


def test_the_scheduler_preempts_the_pod_for_a_higher_priority_one(sim_thread) -> None:
    async def classes(api: client.ApiClient) -> None:
        scheduling = client.SchedulingV1Api(api)
        for name, value in (("batch-low", 1000), ("urgent-high", 100000)):
            await scheduling.create_priority_class({"metadata": {"name": name}, "value": value})

    api_call(sim_thread, classes)
    sim_thread.set_node_allocatable({"cpu": "2"})
    try:
        op = slow_start_operator(
            sim_thread,
            "preempted",
            priority_class_name="batch-low",
            container_resources={"request_cpu": "1500m"},
        )
        urgent = {
            "metadata": {"name": "urgent", "annotations": behavior(duration_seconds=2)},
            "spec": {
                "priorityClassName": "urgent-high",
                "restartPolicy": "Never",
                "containers": [
                    {"name": "c", "image": "alpine:3.20", "resources": {"requests": {"cpu": "1500m"}}}
                ],
            },
        }
        create_urgent = lambda name: api_call(  # noqa: E731
            sim_thread, lambda api: client.CoreV1Api(api).create_namespaced_pod("default", urgent)
        )
        result, first, said = run_with(sim_thread, op, "preempted", running("prepare"), create_urgent)
    finally:
        sim_thread.set_node_allocatable({"cpu": "8"})
    assert result == {"rows": 7}, result
    cause = (
        f"pod default/{first} was preempted by the scheduler for a higher-priority pod "
        "(DisruptionTarget: PreemptionByScheduler)"
    )
    assert f"{cause}; relaunch 1 of 2 as pod default/{first}-r1" in said, said


def test_a_lost_node_that_comes_back_lets_the_pod_be_relaunched(sim_thread) -> None:
    def lose_then_restore(name: str) -> None:
        sim_thread.lose_node_of("default", name)
        time.sleep(2)  # Terminating all along: no replacement yet
        assert pod(sim_thread, f"{name}-r1") is None
        sim_thread.restore_node()

    op = slow_start_operator(sim_thread, "node-lost-early")
    result, first, said = run_with(sim_thread, op, "node-lost-early", running("prepare"), lose_then_restore)
    assert result == {"rows": 7}, result
    cause = (
        f"pod default/{first} was deleted by the taint manager (its node was lost or tainted NoExecute) "
        "(DisruptionTarget: DeletionByTaintManager)"
    )
    assert f"{cause}; relaunch 1 of 2 as pod default/{first}-r1" in said, said


def test_a_pod_that_may_still_run_on_a_lost_node_is_never_replaced(sim_thread, monkeypatch) -> None:
    """Its node does not come back: a margin (60 s; 5 s here) after its grace period the try fails
    instead."""
    monkeypatch.setattr(monitor, "_TAKEN_AWAY_MARGIN_SECONDS", 5.0)
    op = slow_start_operator(
        sim_thread, "node-lost-late", relaunch_started_pods=True, termination_grace_period=1
    )
    try:
        started = time.monotonic()
        result, first, _ = run_with(
            sim_thread,
            op,
            "node-lost-late",
            running("base"),
            lambda name: sim_thread.lose_node_of("default", name),
        )
        waited = time.monotonic() - started
    finally:
        sim_thread.restore_node()
    assert isinstance(result, PodFailedError), result
    assert "and has not ended 5 s after its grace period (its node may be unreachable): not replaced" in str(
        result
    )
    assert 6 <= waited < 35, waited
    assert pod(sim_thread, f"{first}-r1") is None


def test_the_pod_of_a_deleted_node_is_garbage_collected_and_relaunched(sim_thread) -> None:
    def delete_then_register(name: str) -> None:
        sim_thread.delete_node()
        time.sleep(1)
        sim_thread.restore_node()  # a new node joins

    op = slow_start_operator(sim_thread, "node-gone")
    result, first, said = run_with(sim_thread, op, "node-gone", running("prepare"), delete_then_register)
    assert result == {"rows": 7}, result
    cause = (
        f"pod default/{first} was garbage-collected (its node no longer exists) "
        "(DisruptionTarget: DeletionByPodGC)"
    )
    assert f"{cause}; relaunch 1 of 2 as pod default/{first}-r1" in said, said
