"""The operator end to end against the embedded cluster: submit, defer, trigger, finalize.

`execute` really raises TaskDeferred; the trigger is re-created from its serialized form (as the
triggerer does) and run to its event in a fresh event loop; `execute_complete` then finalizes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from kpo_async import AsyncKubernetesPodOperator
from kpo_async.airflow_compat import AirflowFailException, triggerer_calls_on_kill
from kpo_async.errors import InvalidArgumentError, PodCannotRunError, PodFailedError
from kpo_async.identity import TASK_SEEN_FINALIZER
from kpo_async.pods import FINALIZED_LABEL
from kpo_async.testing import harness, logcapture
from kpo_async.testing.harness import FakeTI, behavior, context_for, make_operator, resume, stored_pod, submit
from kpo_async.testing.logcapture import capture_logs
from kpo_async.testing.procs import wait_until


def run_task(op: AsyncKubernetesPodOperator, ti: FakeTI | None = None) -> Any:
    """The task end to end; what `execute_complete` returned."""
    return harness.run_task(op, ti)[1]


def list_pods(sim, namespace: str = "default") -> list[dict[str, Any]]:
    """Pods that exist and are not being deleted (a deleted pod lingers while it terminates)."""

    async def go() -> list[dict[str, Any]]:
        api = await config.new_client_from_config(config_file=sim.kubeconfig_path)
        async with api:
            pods = await client.CoreV1Api(api).list_namespaced_pod(namespace)
            return [
                api.sanitize_for_serialization(p) for p in pods.items if not p.metadata.deletion_timestamp
            ]

    return asyncio.run(go())


def pod_lines(logs: list[dict[str, Any]]) -> list[str]:
    return logcapture.pod_lines(logs)


def test_success_streams_logs_and_pushes_xcom(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        cmds=["sh", "-c"],
        do_xcom_push=True,
        arguments=[
            'for i in 1 2 3; do echo "line $i"; sleep 0.2; done; '
            "echo '{\"rows\": 3}' > /airflow/xcom/return.json"
        ],
    )
    with capture_logs() as logs:
        result = run_task(op)
    assert result == {"rows": 3}
    assert pod_lines(logs) == ["line 1", "line 2", "line 3"]
    assert list_pods(sim_thread) == []  # on_finish_action=delete_pod


def test_failure_reports_exit_code_reason_and_log_tail(sim_thread) -> None:
    op = make_operator(
        sim_thread, cmds=["sh", "-c"], arguments=["echo about to fail; exit 3"], name="failing"
    )
    with pytest.raises(PodFailedError) as info:
        run_task(op)
    message = str(info.value)
    assert "exited with code 3" in message
    assert "Error" in message
    assert "about to fail" in message
    assert list_pods(sim_thread) == []


def test_image_pull_failure_fails_fast_with_reason(sim_thread) -> None:
    op = make_operator(
        sim_thread, image="registry.invalid/nope:1", name="bad-image", startup_timeout_seconds=60
    )
    with pytest.raises(PodFailedError) as info:
        run_task(op)
    assert "ImagePullBackOff" in str(info.value) or "ErrImagePull" in str(info.value)
    assert not isinstance(info.value, AirflowFailException)  # a registry may come back: retries apply
    assert list_pods(sim_thread) == []


def test_an_invalid_image_reference_fails_without_retries(sim_thread) -> None:
    op = make_operator(sim_thread, image="Alpine:3.20", name="bad-reference", retries=3)
    with pytest.raises(PodCannotRunError) as info:
        run_task(op)
    message = str(info.value)
    assert "InvalidImageName" in message and "repository name must be lowercase" in message, message
    assert "No retry was made: the image reference cannot be pulled as written." in message
    assert isinstance(info.value, AirflowFailException)
    assert list_pods(sim_thread) == []


def test_startup_timeout_names_the_cause_and_events(sim_thread) -> None:
    op = make_operator(
        sim_thread, name="unschedulable", node_selector={"disktype": "ssd"}, startup_timeout_seconds=2
    )
    with pytest.raises(PodFailedError) as info:
        run_task(op)
    message = str(info.value)
    assert "startup_timeout_seconds" in message
    assert "FailedScheduling" in message
    assert list_pods(sim_thread) == []


def test_invalid_xcom_fails_clearly_and_cleans_up(sim_thread) -> None:
    script = "echo working; printf 'not json at all' > /airflow/xcom/return.json"
    op = make_operator(sim_thread, cmds=["sh", "-c"], arguments=[script], do_xcom_push=True, name="bad-xcom")
    with pytest.raises(PodFailedError) as info:
        run_task(op)
    assert "is not valid JSON" in str(info.value)
    assert "Fix:" in str(info.value)
    assert list_pods(sim_thread) == []


@pytest.mark.parametrize("written", ["", None])
def test_missing_or_empty_xcom_returns_none_with_a_warning(sim_thread, written: str | None) -> None:
    """As the official operator: no result file, or an empty one, is an XCom of None, not a failure."""
    script = "echo working" if written is None else "echo working; : > /airflow/xcom/return.json"
    name = "no-xcom" if written is None else "empty-xcom"
    op = make_operator(sim_thread, cmds=["sh", "-c"], arguments=[script], do_xcom_push=True, name=name)
    with capture_logs() as logs:
        assert run_task(op) is None
    assert any("missing or empty" in str(e.get("event")) and e["log_level"] == "warning" for e in logs)
    assert list_pods(sim_thread) == []


@pytest.mark.parametrize("multiple_outputs", [False, True])
def test_a_failed_pods_xcom_is_pushed(sim_thread, multiple_outputs: bool) -> None:
    """As the official operator: the result a failing container wrote is pushed before the task fails."""
    script = "echo '{\"rows\": 2}' > /airflow/xcom/return.json; exit 4"
    op = make_operator(
        sim_thread,
        cmds=["sh", "-c"],
        arguments=[script],
        do_xcom_push=True,
        multiple_outputs=multiple_outputs,
        name=f"failed-xcom-{int(multiple_outputs)}",
    )
    ti = FakeTI(op.task_id)
    with pytest.raises(PodFailedError, match="exited with code 4"):
        run_task(op, ti)
    assert ti.xcoms["return_value"] == {"rows": 2}
    assert ("rows" in ti.xcoms) is multiple_outputs
    assert list_pods(sim_thread) == []


@pytest.mark.parametrize(
    ("action", "exit_code", "kept"),
    [
        ("delete_pod", 0, False),
        ("delete_pod", 1, False),
        ("keep_pod", 0, True),
        ("keep_pod", 1, True),
        ("delete_succeeded_pod", 0, False),
        ("delete_succeeded_pod", 1, True),
    ],
)
def test_on_finish_action(sim_thread, action: str, exit_code: int, kept: bool) -> None:
    name = f"finish-{action.replace('_', '-')}-{exit_code}"
    op = make_operator(
        sim_thread, name=name, cmds=["sh", "-c"], arguments=[f"exit {exit_code}"], on_finish_action=action
    )
    if exit_code:
        with pytest.raises(PodFailedError):
            run_task(op)
    else:
        run_task(op)
    pods = [p for p in list_pods(sim_thread) if p["metadata"]["name"].startswith(name)]
    assert bool(pods) == kept
    for pod in pods:
        assert pod["metadata"]["labels"][FINALIZED_LABEL] == "true"
        assert TASK_SEEN_FINALIZER not in (pod["metadata"].get("finalizers") or [])  # released
        asyncio.run(_delete(sim_thread, pod["metadata"]["name"]))
        assert stored_pod(sim_thread, pod["metadata"]["name"]) is None  # so a delete removes it


def test_a_pod_a_user_deletes_while_its_trigger_runs_fails_the_try_and_goes(sim_thread) -> None:
    op = make_operator(sim_thread, name="user-deleted", cmds=["sh", "-c"], arguments=["sleep 30"])
    ti = FakeTI("user-deleted")
    deferred = submit(op, ti)
    name = deferred.trigger.pod_name
    assert TASK_SEEN_FINALIZER in stored_pod(sim_thread, name)["metadata"]["finalizers"]

    def delete_once_running() -> None:
        deadline = time.monotonic() + 30
        while (stored_pod(sim_thread, name) or {}).get("status", {}).get("phase") != "Running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1)  # the trigger follows it by now
        asyncio.run(_delete(sim_thread, name, grace_period_seconds=1))

    deleting = threading.Thread(target=delete_once_running, daemon=True)
    deleting.start()
    with pytest.raises(PodFailedError, match=f"pod default/{name} was deleted before its container finished"):
        resume(op, ti, deferred)
    deleting.join(timeout=40)
    deadline = time.monotonic() + 15  # the trigger released it: gone once its kubelet is done
    while stored_pod(sim_thread, name) is not None:
        assert time.monotonic() < deadline, "the deleted pod is still there"
        time.sleep(0.05)


@pytest.mark.parametrize("action", ["delete_pod", "keep_pod"])
def test_airflows_deferral_timeout_stops_the_pod_as_on_kill_action_says(sim_thread, action: str) -> None:
    """Airflow failed the deferred task (``__fail__``: its trigger timeout fired before our
    trigger's event): the pod is deleted, or kept and released so that a later delete removes it."""
    name = f"deferral-timeout-{action.replace('_', '-')}"
    op = make_operator(
        sim_thread, name=name, cmds=["sh", "-c"], arguments=["sleep 30"], on_kill_action=action
    )
    ti = FakeTI(name)
    pod_name = submit(op, ti).trigger.pod_name
    with pytest.raises(
        Exception, match="Trigger timeout"
    ) as failed:  # airflow.sdk's on 3.3, airflow's on 3.0
        op.resume_execution("__fail__", {"error": "Trigger timeout"}, context_for(ti))
    assert type(failed.value).__name__ == "TaskDeferralTimeout"
    kept = stored_pod(sim_thread, pod_name)
    if action == "delete_pod":
        wait_until(lambda: stored_pod(sim_thread, pod_name) is None, timeout=15, what="the pod gone")
        return
    assert kept is not None and TASK_SEEN_FINALIZER not in (kept["metadata"].get("finalizers") or [])
    asyncio.run(_delete(sim_thread, pod_name))
    wait_until(lambda: stored_pod(sim_thread, pod_name) is None, timeout=15, what="the pod gone")


def test_a_held_pod_of_an_earlier_try_is_released_by_the_next_try(sim_thread) -> None:
    """A pod deleted while no one followed it (its try's worker died) is held by our finalizer; the
    next try, which never adopts a pod being deleted, releases it so that it goes."""
    kwargs = {"name": "held-earlier", "cmds": ["sh", "-c"], "arguments": ["sleep 30"]}
    first = submit(make_operator(sim_thread, **kwargs), FakeTI(task_id="held-earlier", try_number=1))
    name = first.trigger.pod_name
    wait_until(
        lambda: (stored_pod(sim_thread, name) or {}).get("status", {}).get("phase") == "Running",
        what="Running",
    )
    asyncio.run(_delete(sim_thread, name, grace_period_seconds=1))
    wait_until(
        lambda: stored_pod(sim_thread, name)["metadata"].get("deletionGracePeriodSeconds") == 0,
        what="stopped",
    )
    time.sleep(0.5)
    assert stored_pod(sim_thread, name) is not None  # held: no one released it

    op = make_operator(sim_thread, **{**kwargs, "arguments": ["echo quick"]})
    ti = FakeTI(task_id="held-earlier", try_number=2)
    second = submit(op, ti)
    assert second.trigger.pod_name != name
    assert stored_pod(sim_thread, name) is None
    resume(op, ti, second)


async def _delete(sim, name: str, grace_period_seconds: int = 0, release: bool = False) -> None:
    """A user's delete; with `release`, our finalizer removed first (the pod's task is gone)."""
    api = await config.new_client_from_config(config_file=sim.kubeconfig_path)
    async with api:
        if release:
            patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [TASK_SEEN_FINALIZER]}}
            strategic = "application/strategic-merge-patch+json"
            await client.CoreV1Api(api).patch_namespaced_pod(name, "default", patch, _content_type=strategic)
        await client.CoreV1Api(api).delete_namespaced_pod(
            name, "default", grace_period_seconds=grace_period_seconds
        )


def test_deprecated_is_delete_operator_pod_maps_to_on_finish_action(sim_thread) -> None:
    with pytest.warns(DeprecationWarning):
        op = make_operator(sim_thread, is_delete_operator_pod=False)
    assert op.on_finish_action == "keep_pod"


def test_reattach_adopts_the_pod_of_an_interrupted_try(sim_thread) -> None:
    op = make_operator(sim_thread, name="reattach", cmds=["sh", "-c"], arguments=["sleep 1; echo done"])
    first = submit(
        op, FakeTI(task_id="reattach", try_number=1)
    )  # the worker dies here, after the pod was created
    second_ti = FakeTI(task_id="reattach", try_number=2)
    second = submit(
        make_operator(sim_thread, name="reattach", cmds=["sh", "-c"], arguments=["sleep 1; echo done"]),
        second_ti,
    )
    assert second.trigger.pod_name == first.trigger.pod_name
    assert len([p for p in list_pods(sim_thread) if p["metadata"]["name"].startswith("reattach")]) == 1
    resume(op, second_ti, second)
    assert list_pods(sim_thread) == []


class TaskStateChannel:
    """The triggerer supervisor's end of the channel a trigger asks for its task's state on: answers
    with `state`, or never (`None` channel: the lookup fails as outside a triggerer)."""

    def __init__(self, state: str | None) -> None:
        self.state = state

    async def asend(self, request: Any) -> Any:
        from airflow.sdk.execution_time.comms import TaskStatesResult

        return TaskStatesResult(task_states={request.run_ids[0]: {request.task_ids[0]: self.state}})


def kill_deferred_try(monkeypatch, deferred: Any, ti: FakeTI, channel: TaskStateChannel | None) -> list:
    """Airflow 3.3's ``on_kill`` of the trigger `deferred` stored, as its triggerer runs it for the
    task instance `ti`; the logs."""
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", channel, raising=False)
    trigger = harness.trigger_from(*harness.stored_kwargs(deferred))
    trigger.task_instance = ti

    async def kill() -> None:
        try:
            await trigger.on_kill()
        finally:
            await harness.close_process_state()

    with capture_logs() as logs:
        asyncio.run(kill())
    return logs


def test_a_cleared_trys_cancelled_trigger_leaves_the_pod_a_later_try_reattached_to(
    sim_thread, monkeypatch
) -> None:
    """A cleared task's next try may reattach to the pod before the first try's cancelled trigger
    gets to kill it (its state lookup can take seconds on a busy triggerer): the pod lives on."""
    kwargs = {"name": "cleared", "cmds": ["sh", "-c"], "arguments": ["sleep 2; echo done"]}
    first = submit(make_operator(sim_thread, **kwargs), FakeTI(task_id="cleared", try_number=1))
    op, second_ti = make_operator(sim_thread, **kwargs), FakeTI(task_id="cleared", try_number=2)
    second = submit(op, second_ti)
    assert second.trigger.pod_name == first.trigger.pod_name

    first_ti = FakeTI(task_id="cleared", try_number=1)
    logs = kill_deferred_try(monkeypatch, first, first_ti, TaskStateChannel(None))  # None: cleared
    assert [p["metadata"]["name"] for p in list_pods(sim_thread)] == [first.trigger.pod_name]
    assert any("is followed by try 2 of the task now" in str(e.get("event")) for e in logs), logs
    resume(op, second_ti, second)
    assert list_pods(sim_thread) == []


@pytest.mark.parametrize(
    ("channel", "deleted"),
    [(TaskStateChannel("failed"), True), (TaskStateChannel("deferred"), False), (None, False)],
    ids=["marked-failed", "still-deferred", "state-unknown"],
)
def test_on_kill_deletes_the_pod_only_when_the_task_left_deferral(
    sim_thread, monkeypatch, channel: TaskStateChannel | None, deleted: bool
) -> None:
    """A user's kill deletes the pod; a task still deferred (its trigger taken over by another
    triggerer) or a state nobody answers (a sick triggerer's supervisor) keeps it, with a warning."""
    ti = FakeTI(task_id="killed")
    deferred = submit(make_operator(sim_thread, name="killed", arguments=["sleep 30"]), ti)
    logs = kill_deferred_try(monkeypatch, deferred, ti, channel)
    names = [p["metadata"]["name"] for p in list_pods(sim_thread)]
    assert names == ([] if deleted else [deferred.trigger.pod_name]), logs
    if not deleted:
        # Before 3.3 a still-deferred task's trigger is cancelled by every stop or hand-over of
        # a triggerer: that pod is left without a warning; an unanswered state lookup always warns.
        if channel is None or triggerer_calls_on_kill():
            assert any("is left running" in str(e.get("event")) for e in logs), logs
        asyncio.run(_delete(sim_thread, deferred.trigger.pod_name, release=True))  # ours to clean up


def test_without_reattach_an_interrupted_trys_pod_is_replaced_not_orphaned(sim_thread) -> None:
    kwargs = {
        "name": "no-reattach",
        "cmds": ["sh", "-c"],
        "arguments": ["sleep 30"],
        "reattach_on_restart": False,
    }
    first = submit(make_operator(sim_thread, **kwargs), FakeTI(task_id="no-reattach", try_number=1))
    op = make_operator(sim_thread, **{**kwargs, "arguments": ["echo quick"]})
    ti = FakeTI(task_id="no-reattach", try_number=2)
    second = submit(op, ti)
    assert second.trigger.pod_name != first.trigger.pod_name
    names = {p["metadata"]["name"] for p in list_pods(sim_thread)}
    assert names == {second.trigger.pod_name}
    resume(op, ti, second)


def test_resubmitting_the_same_try_reuses_its_pod(sim_thread) -> None:
    kwargs = {
        "name": "same-try",
        "cmds": ["sh", "-c"],
        "arguments": ["echo hi"],
        "reattach_on_restart": False,
    }
    ti = FakeTI(task_id="same-try", try_number=5)
    first = submit(make_operator(sim_thread, **kwargs), ti)
    op = make_operator(sim_thread, **kwargs)
    again = submit(op, ti)
    assert again.trigger.pod_name == first.trigger.pod_name
    resume(op, ti, again)


def test_invalid_pod_name_fails_before_anything_is_created(sim_thread) -> None:
    op = make_operator(sim_thread, task_id="invalid-name", name="Not_A_Valid_Name!")
    with pytest.raises(InvalidArgumentError) as info:
        op.execute(context_for(FakeTI(task_id=op.task_id)))
    assert info.value.argument == "name"
    assert list_pods(sim_thread) == []


def test_unknown_namespace_names_the_namespace(sim_thread) -> None:
    op = make_operator(sim_thread, namespace="does-not-exist")
    with pytest.raises(InvalidArgumentError) as info:
        op.execute(context_for(FakeTI(task_id=op.task_id)))
    assert info.value.argument == "namespace"
    assert "does-not-exist" in str(info.value)


def test_skip_on_exit_code(sim_thread) -> None:
    from kpo_async.airflow_compat import AirflowSkipException

    op = make_operator(
        sim_thread, name="skipper", cmds=["sh", "-c"], arguments=["exit 42"], skip_on_exit_code=42
    )
    with pytest.raises(AirflowSkipException):
        run_task(op)


def test_non_deferrable_mode_runs_the_same_monitor_on_the_worker(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        name="inline",
        deferrable=False,
        do_xcom_push=True,
        cmds=["sh", "-c"],
        arguments=["echo '[1, 2]' > /airflow/xcom/return.json"],
    )
    assert op.execute(context_for(FakeTI(task_id=op.task_id))) == [1, 2]


def test_behavior_annotation_pods_run_too(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        name="behaving",
        annotations=behavior(duration_seconds=0.5, exit_code=0, xcom={"k": "v"}),
        do_xcom_push=True,
    )
    assert run_task(op) == {"k": "v"}


def test_connection_extras_choose_the_xcom_sidecar_image(sim_thread) -> None:
    op = make_operator(sim_thread, name="sidecar-image", do_xcom_push=True)
    extras = {
        "xcom_sidecar_container_image": "mirror.local/alpine:3.20",
        "xcom_sidecar_container_resources": '{"requests": {"cpu": "2m", "memory": "12Mi"}}',
    }
    pod = op.build_pod(context_for(FakeTI(task_id=op.task_id)), "from-conn", extras)
    sidecar = next(c for c in pod.spec.containers if c.name == "airflow-xcom-sidecar")
    assert sidecar.image == "mirror.local/alpine:3.20"
    assert sidecar.resources.requests == {"cpu": "2m", "memory": "12Mi"}
    assert pod.metadata.namespace == "default"  # the task's namespace wins over the connection's
