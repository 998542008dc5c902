"""The runtime's parts on their own, against the embedded cluster over loopback: the API access
layer's typed errors, the trigger outcome and its stored forms, `PodLogs`, `XComCollector` and
`PodMonitor`'s stages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kpo_async import api
from kpo_async.airflow_compat import AirflowTaskTimeout
from kpo_async.clients import ClusterClient, create_client
from kpo_async.connection import ClusterRef
from kpo_async.errors import (
    ClusterUnreachableError,
    Conflict,
    Forbidden,
    NotFound,
    PermissionDeniedError,
    PodFailedError,
    Refused,
    Retryable,
    Unprocessable,
)
from kpo_async.identity import LOG_CURSOR_ANNOTATION, XCOM_RESULT_ANNOTATION, XCOM_SIDECAR_NAME
from kpo_async.log_follower import PodLogs
from kpo_async.log_records import shared_budget
from kpo_async.monitor import MonitorSettings, PodMonitor
from kpo_async.outcome import PodOutcome, Status
from kpo_async.pod_builder import PodArguments, build_pod
from kpo_async.pod_state import PodState
from kpo_async.pods import create_pod, patch_metadata, read_pod
from kpo_async.testing.harness import behavior, close_process_state, make_operator, run_task, wait_for
from kpo_async.testing.sim import Fault, SimCluster, SimConfig
from kpo_async.watch import shared_watcher
from kpo_async.xcom import XComCollector
from tests.core.test_watch import pod_body
from triggers.pod import PodTrigger


class Lines:
    """A logger that keeps what it is told."""

    def __init__(self) -> None:
        self.infos: list[str] = []
        self.warnings: list[str] = []

    def info(self, message: str, *args: Any) -> None:
        self.infos.append(message % args if args else message)

    def warning(self, message: str, *args: Any) -> None:
        self.warnings.append(message % args if args else message)


@pytest.fixture
async def client(sim: SimCluster) -> AsyncIterator[ClusterClient]:
    cluster_client = await create_client(ClusterRef(config_file=sim.kubeconfig_path))
    try:
        yield cluster_client
    finally:
        await close_process_state()
        await cluster_client.close()


async def wait_until(client: ClusterClient, name: str, done: Any, timeout: float = 20) -> PodState:
    return await wait_for(
        lambda: read_pod(client, "default", name),
        lambda state: state is not None and done(state),
        timeout=timeout,
        interval=0.1,
        what=f"pod {name}'s state",
    )


# -- the API access layer ----------------------------------------------------------------------------


async def test_api_errors_are_typed(sim: SimCluster, client: ClusterClient) -> None:
    def read(name: str) -> Any:
        return lambda: client.core.read_namespaced_pod(name, "default", _preload_content=False)

    with pytest.raises(NotFound):
        await api.call(read("absent"), what="reading absent", verb="get")
    assert await read_pod(client, "default", "absent") is None

    body = pod_body("typed", duration_seconds=0.1)
    create = lambda: client.core.create_namespaced_pod("default", body, _preload_content=False)  # noqa: E731
    await api.call(create, what="creating", verb="create")
    with pytest.raises(Conflict):
        await api.call(create, what="creating again", verb="create")

    bad = pod_body("Not_A_Valid_Name")
    with pytest.raises(Unprocessable) as unprocessable:
        await api.call(
            lambda: client.core.create_namespaced_pod("default", bad, _preload_content=False),
            what="creating a bad pod",
            verb="create",
        )
    assert "Not_A_Valid_Name" in unprocessable.value.message

    quota = 'pods "q" is forbidden: exceeded quota: compute'
    sim.faults.add(Fault(method="GET", path=r"/pods/typed$", status=403, message=quota, times=1))
    with pytest.raises(Refused) as refused:
        await api.call(read("typed"), what="reading typed", verb="get")
    assert not isinstance(refused.value, PermissionDeniedError)
    assert "exceeded quota" in str(refused.value)

    # Transient answers are retried; once attempts run out the cause stays typed.
    sim.faults.add(Fault(method="GET", path=r"/pods/typed$", status=503, times=1))
    assert (await api.call(read("typed"), what="reading typed", verb="get"))["metadata"]["name"] == "typed"
    sim.faults.add(Fault(method="GET", path=r"/pods/typed$", status=503, times=1))
    with pytest.raises(ClusterUnreachableError) as unreachable:
        await api.call(read("typed"), what="reading typed", verb="get", attempts=1)
    assert isinstance(unreachable.value.__cause__, Retryable)


async def test_forbidden_names_the_missing_verb_and_resource() -> None:
    async with SimCluster(SimConfig(denied=frozenset({"patch pods"}))) as sim:
        cluster_client = await create_client(ClusterRef(config_file=sim.kubeconfig_path))
        try:
            await cluster_client.core.create_namespaced_pod("default", pod_body("locked"))
            with pytest.raises(Forbidden) as info:
                await patch_metadata(
                    cluster_client, "default", "locked", what="annotating", annotations={"a": "b"}
                )
        finally:
            await cluster_client.close()
    assert isinstance(info.value, PermissionDeniedError)
    assert (info.value.verb, info.value.resource) == ("patch", "pods")
    assert "'patch' verb on pods" in str(info.value) and "docs/rbac.md" in str(info.value)


@pytest.fixture(scope="module")
def sim_without_patch():
    with SimCluster(SimConfig(denied=frozenset({"patch pods"}))).in_thread() as cluster:
        yield cluster


def test_an_annotation_patch_refused_by_rbac_is_reported_as_a_permission_problem(sim_without_patch) -> None:
    op = make_operator(
        sim_without_patch,
        "no-patch",
        do_xcom_push=True,
        annotations=behavior(duration_seconds=0.2, xcom={"k": 1}),
    )
    # The trigger's XCom annotation is refused, then the worker's cleanup (releasing the pod's
    # finalizer is a patch too, before the delete): the task fails naming the verb and the fix.
    with pytest.raises(PermissionDeniedError) as info:
        run_task(op)
    assert "'patch' verb on pods" in str(info.value)
    assert "docs/rbac.md" in str(info.value)


# -- the trigger's outcome and its stored forms ------------------------------------------------------


def test_outcome_payload_round_trip() -> None:
    outcome = PodOutcome(
        Status.FAILED, "ns", "p", exit_code=3, reason="Error", message="m", log_tail=("a", "b")
    )
    payload = outcome.to_payload()
    assert payload["status"] == "failed" and payload["log_tail"] == ["a", "b"]
    assert PodOutcome.from_payload(payload) == outcome


def test_events_stored_by_an_older_version_still_resume(sim_thread) -> None:
    """Literal payloads as versions before the typed outcome wrote them."""
    op = make_operator(sim_thread, "old-events", do_xcom_push=True)
    success = {
        "status": "success",
        "namespace": "default",
        "pod_name": "old-events-0000",
        "pod_uid": "u-1",
        "phase": "Running",
        "exit_code": 0,
        "reason": "Completed",
        "message": "",
        "xcom": {"rows": 3},
        "log_tail": [],
        "log_cursor": "2026-11-27T01:02:03.000000001Z/2",
    }
    assert op.execute_complete({}, success) == {"rows": 3}
    # The old trigger's error branch wrote no pod_uid, phase, exit_code, xcom or log_tail.
    crashed = {
        "status": "error",
        "namespace": "default",
        "pod_name": "old-events-0000",
        "reason": "RuntimeError",
        "message": "the trigger following pod default/old-events-0000 failed on the triggerer: boom",
        "log_cursor": None,
    }
    with pytest.raises(PodFailedError, match="failed on the triggerer: boom"):
        op.execute_complete({}, crashed)
    timeout = {**success, "status": "timeout", "reason": "ExecutionTimeout", "exit_code": None,
               "xcom": None, "message": "still running", "log_tail": ["last words"]}  # fmt: skip
    with pytest.raises(AirflowTaskTimeout, match="last words"):
        op.execute_complete({}, timeout)


def test_trigger_kwargs_stored_by_an_older_version_still_construct() -> None:
    stored = {  # PodTrigger.serialize() before the settings were written once
        "pod_name": "p-1",
        "namespace": "ns",
        "cluster": {"conn_id": "k8s", "config_file": None, "cluster_context": "ctx", "in_cluster": None},
        "base_container_name": "main",
        "get_logs": False,
        "do_xcom_push": True,
        "startup_deadline": 1795740000.5,
        "execution_deadline": None,
        "log_cursor": "2026-11-27T01:02:03.000000001Z/2",
        "on_kill_action": "keep_pod",
        "fallback_poll_seconds": 45.0,
        "log_poll_seconds": 7.0,
        "log_checkpoint_seconds": 30.0,
        "log_events_on_startup": False,
        "secret_env_names": ["API_KEY"],
    }
    trigger = PodTrigger(**stored)
    classpath, kwargs = trigger.serialize()
    assert classpath == "triggers.pod.PodTrigger"
    assert {key: kwargs[key] for key in stored} == stored  # newer settings are added with defaults
    assert kwargs["schedule_deadline"] is None  # so startup_deadline still covers scheduling
    assert trigger.settings.secret_env_names == ("API_KEY",)
    assert trigger.settings.base_container_name == "main"
    # A kwarg from another version is dropped rather than failing the re-creation.
    assert PodTrigger(**stored, retired_setting=1).serialize() == trigger.serialize()


# -- PodLogs -------------------------------------------------------------------------------------------


async def test_pod_logs_read_everything_once_and_checkpoint(client: ClusterClient) -> None:
    await client.core.create_namespaced_pod(
        "default", pod_body("chatty", duration_seconds=1, log_lines_per_second=10)
    )
    state = await wait_until(client, "chatty", lambda s: s.finished)

    async def read_all(logger: Lines) -> PodLogs:
        logs = PodLogs(
            client, "default", "chatty", MonitorSettings(), None, logger=logger, state=lambda: state
        )
        await logs.update(state)
        await logs.finish()
        await logs.stop()
        return logs

    logger = Lines()
    logs = await read_all(logger)
    assert logger.infos == [f"[base] line {i}" for i in range(1, 11)]
    assert list(logs.tail) == [f"line {i}" for i in range(1, 11)]

    await logs.checkpoint()
    state = await wait_until(client, "chatty", lambda s: LOG_CURSOR_ANNOTATION in s.annotations)
    assert state.annotations[LOG_CURSOR_ANNOTATION] == logs.cursor

    # A successor resumes from the pod's checkpoint: nothing is delivered twice.
    again = Lines()
    successor = await read_all(again)
    assert again.infos == [] and successor.cursor == logs.cursor


async def test_pod_logs_follow_a_running_container(client: ClusterClient) -> None:
    await client.core.create_namespaced_pod(
        "default", pod_body("streaming", duration_seconds=1.5, log_lines_per_second=10)
    )
    state = await wait_until(client, "streaming", lambda s: s.started("base"))
    subscription = shared_watcher(client, "default").subscribe("streaming")
    logger = Lines()
    settings = MonitorSettings()
    logs = PodLogs(
        client, "default", "streaming", settings, None, logger=logger, state=lambda: subscription.state
    )
    try:
        await logs.update(state)
        await wait_until(client, "streaming", lambda s: s.finished)
        await logs.finish()
    finally:
        await logs.stop()
        subscription.watcher.unsubscribe(subscription)
    assert logger.infos == [f"[base] line {i}" for i in range(1, 16)]


async def test_lines_held_under_load_are_written_before_the_cursor_is_recorded(
    client: ClusterClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the process's log record budget lines wait to be written together; a checkpoint must
    not record a cursor past a line that is not in the log yet, or a crash would lose it."""
    monkeypatch.setenv("AIRFLOW__KPO_ASYNC__LOG_RECORDS_PER_SECOND", "0.01")  # one record at once
    shared_budget.cache_clear()
    await client.core.create_namespaced_pod(
        "default", pod_body("held", duration_seconds=1, log_lines_per_second=10)
    )
    state = await wait_until(client, "held", lambda s: s.finished)
    logger = Lines()
    logs = PodLogs(client, "default", "held", MonitorSettings(), None, logger=logger, state=lambda: state)
    try:
        await logs.update(state)
        await asyncio.wait_for(asyncio.gather(*(f.task for f in logs.followers.values() if f.task)), 20)
        assert logger.infos == ["[base] line 1"]  # read to the end; the other nine are held
        await logs.checkpoint()
        assert logger.infos == ["[base] line 1", "\n".join(f"[base] line {i}" for i in range(2, 11))]
        state = await wait_until(client, "held", lambda s: LOG_CURSOR_ANNOTATION in s.annotations)
        assert state.annotations[LOG_CURSOR_ANNOTATION] == logs.cursor
    finally:
        await logs.stop()
        shared_budget.cache_clear()


# -- XComCollector --------------------------------------------------------------------------------------


async def test_xcom_collector_reads_records_and_stops_the_sidecar(client: ClusterClient) -> None:
    pod = build_pod(
        PodArguments(
            namespace="default",
            name="xcom-pod",
            image="alpine:3.20",
            do_xcom_push=True,
            random_name_suffix=False,
            annotations=behavior(duration_seconds=0.2, xcom={"rows": 3}),
        )
    )
    await create_pod(client, pod)

    def ready(state: PodState) -> bool:
        base, sidecar = state.container("base"), state.container(XCOM_SIDECAR_NAME)
        return base is not None and base.terminated and sidecar is not None and sidecar.state == "running"

    state = await wait_until(client, "xcom-pod", ready)

    async def next_state(deadline: float | None) -> PodState | None:
        await asyncio.sleep(0.1)
        return await read_pod(client, "default", "xcom-pod")

    collector = XComCollector(client, "default", "xcom-pod", next_state)
    assert await collector.collect(state) == {"rows": 3}
    stopped = await wait_until(client, "xcom-pod", lambda s: s.finished)
    assert stopped.annotations[XCOM_RESULT_ANNOTATION] == '{"rows": 3}'
    # A re-created trigger takes the recorded value: the sidecar is gone, nothing is exec'd.
    assert await collector.collect(stopped) == {"rows": 3}


# -- PodMonitor's stages ------------------------------------------------------------------------------


def monitor_for(client: ClusterClient, name: str, *, startup_seconds: float) -> PodMonitor:
    settings = MonitorSettings(startup_deadline=time.time() + startup_seconds)
    return PodMonitor(client, "default", name, settings, log_cursor=None, logger=Lines())


async def test_monitor_moves_through_its_stages(client: ClusterClient) -> None:
    await client.core.create_namespaced_pod(
        "default", pod_body("staged", duration_seconds=0.5, log_lines_per_second=4, exit_code=2)
    )
    monitor = monitor_for(client, "staged", startup_seconds=20)
    assert not monitor.started
    outcome = await monitor.run()
    assert monitor.started  # the base container ran
    assert (outcome.status, outcome.exit_code) == (Status.FAILED, 2)
    assert outcome.log_tail == ("line 1", "line 2")

    body = pod_body("unschedulable")
    body["spec"]["nodeSelector"] = {"disktype": "ssd"}
    await client.core.create_namespaced_pod("default", body)
    stuck = monitor_for(client, "unschedulable", startup_seconds=1)
    outcome = await stuck.run()
    assert not stuck.started
    assert (outcome.status, outcome.reason) == (Status.TIMEOUT, "StartupTimeout")
