"""The cluster takes the pod away: the task relaunches a pod that had not started (by default),
fails naming the disruption for one that had, relaunches that one too with
`relaunch_started_pods=True`, stops after `disruption_relaunches`; and every finish logs the
pod's timeline. Against the embedded cluster over loopback; the kubelet's eviction is the
disruption here (tests/sim and tests/e2e cover the other kinds)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes.client import models as k8s

from kpo_async.airflow_compat import AirflowFailException, TaskDeferred
from kpo_async.errors import PodFailedError
from kpo_async.testing.harness import FakeTI, context_for, make_operator, run_deferred, submit
from kpo_async.testing.logcapture import capture_logs

INIT_SECONDS = 3


def pod(sim: Any, name: str) -> dict[str, Any] | None:
    """The pod, unless it is gone or being deleted."""
    found = sim.call(lambda: sim.store.get("pods", "default", name))
    body = json.loads(found.raw) if found is not None else None
    return None if body is None or body["metadata"].get("deletionTimestamp") else body


def running(container: str) -> Callable[[dict[str, Any]], bool]:
    def check(body: dict[str, Any]) -> bool:
        status = body.get("status") or {}
        states = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        return any(s["name"] == container and "running" in (s.get("state") or {}) for s in states)

    return check


@contextmanager
def evict_when(sim: Any, names: list[str], ready: Callable[[dict[str, Any]], bool]) -> Iterator[list[str]]:
    """In the background, evict each named pod (by the kubelet) once `ready` holds for it; the
    names evicted so far are yielded."""
    evicted: list[str] = []

    def run() -> None:
        for name in names:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                body = pod(sim, name)
                if body is not None and ready(body):
                    sim.evict("default", name, "The node was low on resource: memory.")
                    evicted.append(name)
                    break
                time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield evicted
    finally:
        thread.join(timeout=40)


def slow_start_operator(sim: Any, task_id: str, **kwargs: Any) -> Any:
    """A pod whose base container starts only after an init container ran for INIT_SECONDS."""
    prepare = k8s.V1Container(
        name="prepare", image="alpine:3.20", command=["sh", "-c", f"sleep {INIT_SECONDS}"]
    )
    return make_operator(
        sim,
        task_id,
        init_containers=[prepare],
        cmds=["sh", "-c"],
        arguments=["sleep 2; echo work done; echo '{\"rows\": 7}' > /airflow/xcom/return.json"],
        do_xcom_push=True,
        **kwargs,
    )


def finish(op: Any, ti: FakeTI, deferred: TaskDeferred) -> tuple[Any, list[TaskDeferred]]:
    """Run trigger and resume until the task ends; its result and every re-deferral."""
    redeferred = []
    while True:
        event = run_deferred(deferred)
        try:
            return getattr(op, deferred.method_name)(context_for(ti), event), redeferred
        except TaskDeferred as again:
            redeferred.append(again)
            deferred = again


def events(logs: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("event")) for e in logs]


def test_a_pod_evicted_before_it_started_is_relaunched_under_a_name_of_its_own(sim_thread) -> None:
    op = slow_start_operator(sim_thread, "evicted-early")
    ti = FakeTI("evicted-early")
    deferred = submit(op, ti)
    first = deferred.trigger.pod_name
    with capture_logs() as logs, evict_when(sim_thread, [first], running("prepare")) as evicted:
        result, redeferred = finish(op, ti, deferred)
    assert evicted == [first]
    assert result == {"rows": 7}
    (relaunched,) = redeferred
    second = relaunched.trigger.pod_name
    assert second == f"{first}-r1"
    said = events(logs)
    assert any(
        line.startswith(f"pod default/{first} was terminated by its node's kubelet (DisruptionTarget: ")
        and "TerminationByKubelet): The node was low on resource: memory; relaunch" in line
        and line.endswith(f"; relaunch 1 of 2 as pod default/{second}")
        for line in said
    ), [line for line in said if "relaunch" in line]
    assert ti.xcoms["pod_name"] == second
    # Both pods cleaned up per on_finish_action (delete_pod); the replacement knew which it was.
    assert pod(sim_thread, first) is None and pod(sim_thread, second) is None
    timeline = next(line for line in said if line.startswith(f"pod default/{second} timeline: "))
    assert "relaunches 1" in timeline and "running" in timeline, timeline


def test_a_started_pod_taken_away_fails_the_try_naming_the_disruption(sim_thread) -> None:
    op = slow_start_operator(sim_thread, "evicted-late", retries=3)
    ti = FakeTI("evicted-late")
    deferred = submit(op, ti)
    first = deferred.trigger.pod_name
    with evict_when(sim_thread, [first], running("base")), pytest.raises(PodFailedError) as failed:
        finish(op, ti, deferred)
    message = str(failed.value)
    assert f"pod default/{first} was terminated by its node's kubelet" in message
    assert "not relaunched: its base container had started (relaunch_started_pods=True" in message
    assert not isinstance(failed.value, AirflowFailException)  # the try's retries still apply
    assert pod(sim_thread, first) is None


def test_relaunch_started_pods_replaces_a_started_pod_until_the_relaunches_are_used(sim_thread) -> None:
    op = slow_start_operator(sim_thread, "evicted-often", relaunch_started_pods=True, disruption_relaunches=1)
    ti = FakeTI("evicted-often")
    deferred = submit(op, ti)
    first = deferred.trigger.pod_name
    names = [first, f"{first}-r1"]
    with evict_when(sim_thread, names, running("base")) as evicted, pytest.raises(PodFailedError) as failed:
        finish(op, ti, deferred)
    assert evicted == names
    assert f"pod default/{first}-r1 was terminated" in str(failed.value)
    assert "not relaunched: disruption_relaunches=1 relaunches were used" in str(failed.value)
    assert [pod(sim_thread, name) for name in names] == [None, None]


def test_without_deferral_the_worker_relaunches_the_pod_itself(sim_thread) -> None:
    op = slow_start_operator(sim_thread, "evicted-inline", deferrable=False)
    ti = FakeTI("evicted-inline")
    first = op.build_pod(context_for(ti), None).metadata.name
    with capture_logs() as logs, evict_when(sim_thread, [first], running("prepare")) as evicted:
        result = op.execute(context_for(ti))
    assert evicted == [first] and result == {"rows": 7}
    assert any(line.endswith(f"relaunch 1 of 2 as pod default/{first}-r1") for line in events(logs))


def test_disruption_relaunches_must_be_a_whole_number() -> None:
    from kpo_async import AsyncKubernetesPodOperator
    from kpo_async.errors import InvalidArgumentError

    with pytest.raises(
        InvalidArgumentError, match="Invalid disruption_relaunches: -1 is not a whole number >= 0"
    ):
        AsyncKubernetesPodOperator(task_id="t", image="alpine", disruption_relaunches=-1)
