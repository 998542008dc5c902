"""Runtime bugs the soak with evictions found (docs/reliability.md section 6), each reproduced on
the embedded cluster (marked `xfail(strict=True)` until it was fixed)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kpo_async.clients import close_shared_clients, shared_client
from kpo_async.connection import ClusterRef
from kpo_async.testing.harness import FakeTI, create_pods, pod_body, stored_pod, submit
from kpo_async.watch import shared_watcher, stop_shared_watchers
from tests.core.test_disruptions import finish, pod, running, slow_start_operator


def evict_by_eviction_api(sim: Any, name: str) -> None:
    """A drain's eviction (policy/v1 Eviction) of the pod; returns once the eviction has done all it
    does without the task: the pod has ended, held by our finalizer (or is gone)."""
    from kpo_async.clients import create_client

    async def evict() -> None:
        client = await create_client(ClusterRef(config_file=sim.kubeconfig_path))
        try:
            body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
            await client.core.create_namespaced_pod_eviction(name, "default", body)
        finally:
            await client.close()

    asyncio.run(evict())
    deadline = time.monotonic() + 10
    while (body := stored_pod(sim, name)) is not None and body["status"]["phase"] != "Failed":
        assert time.monotonic() < deadline, f"pod {name} has not ended 10 s after its eviction"
        time.sleep(0.05)


def test_a_pod_the_eviction_api_removed_while_no_trigger_ran_is_still_relaunched(sim_thread) -> None:
    op = slow_start_operator(sim_thread, "evicted-unwatched")
    ti = FakeTI("evicted-unwatched")
    deferred = submit(op, ti)
    first = deferred.trigger.pod_name
    deadline = time.monotonic() + 30
    while not ((body := pod(sim_thread, first)) is not None and running("prepare")(body)):
        assert time.monotonic() < deadline, "the init container never ran"
        time.sleep(0.05)
    evict_by_eviction_api(sim_thread, first)  # before any trigger of this try ran
    result, redeferred = finish(op, ti, deferred)
    assert result == {"rows": 7}
    assert [d.trigger.pod_name for d in redeferred] == [f"{first}-r1"]
    assert stored_pod(sim_thread, first) is None  # the relaunch's cleanup released and deleted it


def _labelled(watcher: Any, name: str, touched: str) -> bool:
    state = watcher.states.get(name)
    return state is not None and state.labels.get("touched") == touched


async def test_a_wait_cancelled_as_its_pod_changes_is_cancelled(sim) -> None:
    await create_pods(sim, [pod_body("changing", duration_seconds=60)])
    api = await shared_client(ClusterRef(config_file=sim.kubeconfig_path))
    try:
        watcher = shared_watcher(api, "default")
        subscription = watcher.subscribe("changing")
        landed = swallowed = 0
        for attempt in range(10):
            await subscription.wait(0.2)  # consume the change of the previous attempt, if any
            waiting = asyncio.create_task(subscription.wait(30))
            await asyncio.sleep(0.1)
            change = {"metadata": {"labels": {"touched": str(attempt)}}}
            patch = asyncio.create_task(api.core.patch_namespaced_pod("changing", "default", change))
            touched = str(attempt)
            while not _labelled(watcher, "changing", touched):  # noqa: ASYNC110 - one turn at a time
                await asyncio.sleep(0)  # so that the cancel lands as the change does
            await_done = waiting.done()
            waiting.cancel()
            await patch
            if await_done:
                continue  # it had returned already: nothing to cancel
            landed += 1
            try:
                await waiting
            except asyncio.CancelledError:
                continue
            swallowed += 1
        assert landed > 0
        assert swallowed == 0, f"{swallowed} of {landed} cancellations were lost"
    finally:
        await stop_shared_watchers()
        await close_shared_clients()
