"""A create the namespace's ResourceQuota refuses waits, deferred, until the quota has room (the
embedded cluster keeps the quota's usage and refuses with kube-apiserver's texts, as
kube-controller-manager and the quota admission do), or fails once the scheduling window ran out."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from kpo_async.airflow_compat import TaskDeferred
from kpo_async.errors import PodFailedError
from kpo_async.testing.harness import FakeTI, context_for, make_operator, run_deferred, submit
from kpo_async.testing.logcapture import capture_logs
from triggers.quota import QuotaTrigger


def on_cluster(sim: Any, action: Any) -> Any:
    async def go() -> Any:
        api = await config.new_client_from_config(config_file=sim.kubeconfig_path)
        async with api:
            return await action(client.CoreV1Api(api))

    return asyncio.run(go())


@pytest.fixture
def full_namespace(sim_thread, request: pytest.FixtureRequest) -> str:
    """A namespace whose quota allows one pod, taken by a pod named `blocker`."""
    namespace = f"quota-{request.node.name[-20:].replace('_', '-').strip('-')}"

    async def setup(v1: client.CoreV1Api) -> None:
        await v1.create_namespace({"metadata": {"name": namespace}})
        await v1.create_namespaced_resource_quota(
            namespace, {"metadata": {"name": "team"}, "spec": {"hard": {"pods": "1"}}}
        )
        blocker = {
            "metadata": {"name": "blocker"},
            "spec": {"containers": [{"name": "c", "image": "alpine:3.20", "command": ["sleep", "600"]}]},
        }
        await v1.create_namespaced_pod(namespace, blocker)

    on_cluster(sim_thread, setup)
    return namespace


def free_later(sim: Any, namespace: str, after: float) -> threading.Thread:
    def run() -> None:
        time.sleep(after)
        on_cluster(sim, lambda v1: v1.delete_namespaced_pod("blocker", namespace, grace_period_seconds=0))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_full_quota_defers_the_create_until_it_has_room(sim_thread, full_namespace) -> None:
    op = make_operator(
        sim_thread,
        "waits-for-quota",
        namespace=full_namespace,
        cmds=["sh", "-c"],
        arguments=["echo created at last; echo '[1, 2]' > /airflow/xcom/return.json"],
        do_xcom_push=True,
    )
    ti = FakeTI("waits-for-quota")
    with capture_logs() as logs:
        waiting = submit(op, ti)
        assert isinstance(waiting.trigger, QuotaTrigger) and waiting.method_name == "execute_after_quota"
        freed = free_later(sim_thread, full_namespace, after=3)
        event = run_deferred(waiting, timeout=60)
        freed.join()
        assert event["quota_free"] is True and event["waited"] >= 2, event
        with pytest.raises(TaskDeferred) as following:
            op.execute_after_quota(context_for(ti), event)
        result = op.execute_complete(context_for(ti), run_deferred(following.value))
    assert result == [1, 2]
    said = [str(e.get("event")) for e in logs]
    waits = [line for line in said if line.startswith(f"namespace quota {full_namespace}/team: ")]
    assert waits == [f"namespace quota {full_namespace}/team: pods used 1/1, this pod asks 1; waiting"], said
    timeline = next(line for line in said if " timeline: " in line)
    assert "quota wait " in timeline, timeline


def test_a_quota_that_stays_full_fails_the_task_once_the_window_ran_out(sim_thread, full_namespace) -> None:
    op = make_operator(sim_thread, "quota-stays-full", namespace=full_namespace, startup_timeout_seconds=3)
    ti = FakeTI("quota-stays-full")
    waiting = submit(op, ti)
    event = run_deferred(waiting, timeout=30)
    assert event["quota_free"] is False
    with pytest.raises(PodFailedError) as failed:
        op.execute_after_quota(context_for(ti), event)
    assert "the namespace's quota 'team' had no room for the pod in " in str(failed.value)
    assert "Fix: raise or free the quota" in str(failed.value)


def test_a_replacement_that_waited_for_quota_keeps_its_name_and_is_announced_once(sim_thread) -> None:
    """The worker said "relaunch 1 of 2 as pod X" before the quota refused X; creating X after the
    wait names it the same and does not announce the relaunch a second time."""
    op = make_operator(sim_thread, "relaunch-after-quota", random_name_suffix=False)
    ti = FakeTI("relaunch-after-quota")
    since = time.time() - 7
    event = {"quota_free": True, "quota": "team", "waited": 7.0, "waiting_since": since, "relaunch": 1}
    with capture_logs() as logs, pytest.raises(TaskDeferred) as following:
        op.execute_after_quota(context_for(ti), event)
    assert following.value.trigger.pod_name == "relaunch-after-quota-r1"
    said = [str(e.get("event")) for e in logs]
    assert not [line for line in said if "relaunch 1 of" in line], said
    assert op.execute_complete(context_for(ti), run_deferred(following.value)) is None
