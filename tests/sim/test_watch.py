"""Watch on pods through kubernetes_asyncio.watch.Watch: events, resume, 410, bookmarks, timeouts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.testing.sim import SimCluster, SimConfig

from .conftest import FAST, pod_manifest, wait_phase


async def collect(v1: client.CoreV1Api, until: Any, timeout: float = 10.0, **kw: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    w = watch.Watch()

    async def run() -> None:
        async for ev in w.stream(v1.list_namespaced_pod, "default", **kw):
            events.append(ev)
            if until(ev, events):
                w.stop()
                break

    await asyncio.wait_for(run(), timeout)
    await w.close()
    return events


async def test_lifecycle_events_and_monotonic_rv(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("w1", "echo hi"))

    def done(ev: dict[str, Any], _: list[Any]) -> bool:
        return ev["type"] == "DELETED"

    task = asyncio.ensure_future(collect(v1, done, timeout_seconds=20))
    await wait_phase(v1, "w1", ("Succeeded",))
    await v1.delete_namespaced_pod("w1", "default")
    events = await task
    types = [e["type"] for e in events]
    assert types[0] == "ADDED" and types[-1] == "DELETED" and "MODIFIED" in types
    rvs = [int(e["raw_object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
    phases = [e["object"].status.phase for e in events]
    assert phases[0] == "Pending" and "Succeeded" in phases
    assert all(e["raw_object"]["kind"] == "Pod" and e["raw_object"]["apiVersion"] == "v1" for e in events)


async def test_resume_from_resource_version(v1: client.CoreV1Api) -> None:
    listed = await v1.list_namespaced_pod("default")
    rv = listed.metadata.resource_version
    await v1.create_namespaced_pod("default", pod_manifest("r1", "sleep 10", labels={"k": "v"}))
    await v1.create_namespaced_pod("default", pod_manifest("r2", "sleep 10"))
    events = await collect(
        v1,
        lambda ev, evs: len(evs) == 1,
        resource_version=rv,
        label_selector="k=v",
        timeout_seconds=5,
    )
    assert events[0]["type"] == "ADDED" and events[0]["object"].metadata.name == "r1"


async def test_too_old_resource_version_gives_410() -> None:
    async with SimCluster(SimConfig(watch_history=5, **FAST)) as cluster:  # type: ignore[arg-type]
        from .conftest import _client_config

        async with client.ApiClient(await _client_config(cluster)) as api:
            v1 = client.CoreV1Api(api)
            for i in range(5):
                await v1.create_namespaced_pod("default", pod_manifest(f"o{i}", "sleep 10"))
            w = watch.Watch()
            with pytest.raises(ApiException) as e:
                async for _ev in w.stream(
                    v1.list_namespaced_pod, "default", resource_version="2", timeout_seconds=2
                ):
                    pass
            assert e.value.status == 410
            assert "too old resource version: 2" in e.value.reason
            # the raw stream: HTTP 200 then an ERROR event carrying an Expired Status
            resp = await v1.list_namespaced_pod(
                "default", watch=True, resource_version="2", timeout_seconds=2, _preload_content=False
            )
            line = json.loads(await resp.content.readline())
            assert resp.status == 200
            assert line["type"] == "ERROR"
            obj = line["object"]
            assert obj["kind"] == "Status" and obj["code"] == 410 and obj["reason"] == "Expired"
            assert obj["message"].startswith("too old resource version: 2 (")
            resp.release()


async def test_bookmarks(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("b1", "sleep 10"))
    resp = await v1.list_namespaced_pod(
        "default", watch=True, allow_watch_bookmarks=True, timeout_seconds=3, _preload_content=False
    )
    seen = []
    while True:
        line = await asyncio.wait_for(resp.content.readline(), 5)
        if not line:
            break
        ev = json.loads(line)
        seen.append(ev["type"])
        if ev["type"] == "BOOKMARK":
            assert ev["object"] == {
                "kind": "Pod",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": ev["object"]["metadata"]["resourceVersion"]},
            }
            assert int(ev["object"]["metadata"]["resourceVersion"]) > 0
            break
    resp.release()
    assert seen[0] == "ADDED" and "BOOKMARK" in seen


async def test_timeout_seconds_ends_stream(v1: client.CoreV1Api) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    resp = await v1.list_namespaced_pod("default", watch=True, timeout_seconds=1, _preload_content=False)
    data = await asyncio.wait_for(resp.read(), 5)
    assert data == b""
    assert 0.9 <= loop.time() - t0 < 3


async def test_selector_transition_sends_added_and_deleted(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("s1", "sleep 10", labels={"team": "a"}))
    resp = await v1.list_namespaced_pod(
        "default", watch=True, label_selector="team=b", timeout_seconds=5, _preload_content=False
    )
    await asyncio.sleep(0.1)
    await v1.patch_namespaced_pod("s1", "default", {"metadata": {"labels": {"team": "b"}}})
    first = json.loads(await asyncio.wait_for(resp.content.readline(), 5))
    assert first["type"] == "ADDED"
    await v1.patch_namespaced_pod("s1", "default", {"metadata": {"labels": {"team": "c"}}})
    while True:
        ev = json.loads(await asyncio.wait_for(resp.content.readline(), 5))
        if ev["type"] != "MODIFIED":
            break
    assert ev["type"] == "DELETED" and ev["object"]["metadata"]["labels"] == {"team": "c"}
    resp.release()


async def test_send_initial_events(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("i1", "sleep 10"))
    resp = await v1.list_namespaced_pod(
        "default",
        watch=True,
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        allow_watch_bookmarks=True,
        timeout_seconds=3,
        _preload_content=False,
    )
    first = json.loads(await resp.content.readline())
    second = json.loads(await resp.content.readline())
    while second["type"] == "MODIFIED":
        second = json.loads(await resp.content.readline())
    assert first["type"] == "ADDED"
    assert second["type"] == "BOOKMARK"
    assert second["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    resp.release()


async def test_resource_version_from_the_future_is_504(v1: client.CoreV1Api) -> None:
    listed = await v1.list_namespaced_pod("default")
    future = str(int(listed.metadata.resource_version) + 1000)
    with pytest.raises(ApiException) as e:
        await v1.list_namespaced_pod("default", watch=True, resource_version=future, timeout_seconds=5)
    assert e.value.status == 504
    body = json.loads(e.value.body)
    assert body["reason"] == "Timeout" and body["message"].startswith(
        f"Too large resource version: {future}, current: "
    )
    assert body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
