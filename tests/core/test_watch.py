"""The shared watch: one list+watch per (cluster, namespace), each trigger gets exactly its pod."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from kpo_async import watch
from kpo_async.clients import close_shared_clients, shared_client
from kpo_async.connection import ClusterRef
from kpo_async.testing.harness import create_pods, first_event, pod_body, wait_for
from kpo_async.testing.sim import Fault
from kpo_async.watch import shared_watcher, stop_shared_watchers
from triggers.pod import PodTrigger


def trigger_for(sim, name: str, **kwargs: Any) -> PodTrigger:
    return PodTrigger(
        pod_name=name,
        namespace="default",
        cluster=ClusterRef(config_file=sim.kubeconfig_path).to_dict(),
        get_logs=False,
        **kwargs,
    )


async def run_many(sim, count: int) -> list[dict[str, Any]]:
    names = [f"many-{i}" for i in range(count)]
    await create_pods(
        sim,
        [pod_body(n, duration_seconds=0.2 + (i % 7) * 0.15, exit_code=i % 3) for i, n in enumerate(names)],
    )
    return await asyncio.wait_for(asyncio.gather(*(first_event(trigger_for(sim, n)) for n in names)), 60)


async def test_many_triggers_share_one_watch_and_each_gets_its_own_pod(sim) -> None:
    try:
        events = await run_many(sim, 40)
        for i, event in enumerate(events):
            assert event["pod_name"] == f"many-{i}"
            assert event["exit_code"] == i % 3
            assert event["status"] == ("success" if i % 3 == 0 else "failed")
        requests = sim.stats.snapshot()["requests"]
        assert requests.get("watch pods", 0) <= 2  # one stream (a reconnect at most), not one per pod
        assert requests.get("list pods", 0) <= 2
        assert requests.get("get pods", 0) == 0  # no per-pod polling
    finally:
        await stop_shared_watchers()
        await close_shared_clients()


async def test_watch_cut_expired_and_erroring_lose_no_completion(sim) -> None:
    sim.faults.add(
        Fault(
            method="GET",
            path=r"/api/v1/namespaces/default/pods$",
            query="watch=true",
            watch_close_after=0.3,
            times=3,
        )
    )
    sim.faults.add(
        Fault(
            method="GET",
            path=r"/api/v1/namespaces/default/pods$",
            query="watch=true",
            watch_gone=True,
            times=1,
        )
    )
    sim.faults.add(Fault(method="GET", path=r"/api/v1/namespaces/default/pods$", status=500, times=2))
    try:
        events = await run_many(sim, 20)
        assert [e["pod_name"] for e in events] == [f"many-{i}" for i in range(20)]
        assert all(e["exit_code"] == i % 3 for i, e in enumerate(events))
        assert sim.stats.snapshot()["requests"].get("list pods", 0) >= 2  # it re-listed after 410
    finally:
        await stop_shared_watchers()
        await close_shared_clients()


async def test_cancelled_triggers_unsubscribe_and_the_watch_stops(
    sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_pods(sim, [pod_body(f"long-{i}", duration_seconds=60) for i in range(5)])
    try:
        tasks = [asyncio.create_task(first_event(trigger_for(sim, f"long-{i}"))) for i in range(5)]
        api = await shared_client(ClusterRef(config_file=sim.kubeconfig_path))
        watcher = shared_watcher(api, "default")
        await wait_for(lambda: len(watcher._subscribers), lambda n: n == 5, what="5 pods subscribed to")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert watcher._subscribers == {}
        monkeypatch.setattr(watch, "LINGER_SECONDS", 0.1)
        # the idle watcher ends its own loop once the current stream yields (bookmarks do)
        await wait_for(
            lambda: watcher._task,
            lambda task: task is None or task.done(),
            what="the idle watcher to end",
        )
    finally:
        await stop_shared_watchers()
        await close_shared_clients()


async def test_a_pod_that_never_appears_ends_by_its_startup_deadline(sim) -> None:
    import time

    try:
        event = await asyncio.wait_for(
            first_event(trigger_for(sim, "never-created", startup_deadline=time.time() + 1)), 30
        )
        assert event["status"] == "error"
        assert "never created" in event["message"] or "deleted" in event["message"]
    finally:
        await stop_shared_watchers()
        await close_shared_clients()


async def test_pod_deleted_from_outside_while_running(sim) -> None:
    await create_pods(sim, [pod_body("doomed", duration_seconds=30)])
    try:
        task = asyncio.create_task(first_event(trigger_for(sim, "doomed")))
        await asyncio.sleep(1.0)
        api = await shared_client(ClusterRef(config_file=sim.kubeconfig_path))
        await api.core.delete_namespaced_pod(
            "doomed", "default", body=k8s.V1DeleteOptions(grace_period_seconds=0)
        )
        event = await asyncio.wait_for(task, 30)
        assert event["status"] in ("error", "failed")
        assert "doomed" in event["message"]
    finally:
        await stop_shared_watchers()
        await close_shared_clients()
