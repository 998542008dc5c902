"""Fault injection (in-process and over /sim/v1), as seen by the real client."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.testing.sim import Fault, SimCluster
from kpo_async.testing.sim.control import SimControl

from .conftest import pod_manifest, wait_for, wait_phase


async def test_latency(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("f1", "sleep 10"))
    cluster.faults.add(Fault(method="GET", path=r"/pods/f1$", latency=0.4))
    t0 = time.monotonic()
    await v1.read_namespaced_pod("f1", "default")
    assert time.monotonic() - t0 >= 0.4
    t0 = time.monotonic()
    await v1.read_namespaced_pod("f1", "default")  # times=1: only the first one
    assert time.monotonic() - t0 < 0.3


async def test_error_statuses_and_retry_after(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    cluster.faults.add(Fault(method="POST", path=r"/namespaces/default/pods$", status=503, times=2))
    for _ in range(2):
        with pytest.raises(ApiException) as e:
            await v1.create_namespaced_pod("default", pod_manifest("f2", "true"))
        assert e.value.status == 503
        assert json.loads(e.value.body)["reason"] == "ServiceUnavailable"
    await v1.create_namespaced_pod("default", pod_manifest("f2", "true"))

    cluster.faults.add(Fault(path=r"/pods$", status=429, retry_after=2))
    with pytest.raises(ApiException) as e:
        await v1.list_namespaced_pod("default")
    assert e.value.status == 429 and e.value.headers["Retry-After"] == "2"
    body = json.loads(e.value.body)
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Too many requests, please try again later.",
        "reason": "TooManyRequests",
        "details": {"retryAfterSeconds": 2},
        "code": 429,
    }
    cluster.faults.add(Fault(path=r"/pods$", status=500, message="etcdserver: request timed out"))
    with pytest.raises(ApiException) as e:
        await v1.list_namespaced_pod("default")
    assert e.value.status == 500 and json.loads(e.value.body)["message"] == "etcdserver: request timed out"


async def test_drop_connection_mid_response(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    for i in range(3):
        await v1.create_namespaced_pod("default", pod_manifest(f"d{i}", "sleep 10"))
    cluster.faults.add(Fault(method="GET", path=r"/pods$", drop_after_bytes=100))
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await v1.list_namespaced_pod("default")
    assert len((await v1.list_namespaced_pod("default")).items) == 3


async def test_drop_mid_watch_and_mid_log(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    for i in range(3):
        await v1.create_namespaced_pod(
            "default", pod_manifest(f"m{i}", "for i in $(seq 1 50); do echo line $i; done; sleep 10")
        )
    sizes = []
    for i in range(3):
        await wait_phase(v1, f"m{i}", ("Running",))
        resp = await v1.read_namespaced_pod(f"m{i}", "default", _preload_content=False)
        sizes.append(len(await resp.read()))
    one = max(sizes) + 100  # a bit more than one event line, less than three
    cluster.faults.add(Fault(method="GET", path=r"/pods$", query="watch=true", drop_after_bytes=one))
    resp = await v1.list_namespaced_pod("default", watch=True, timeout_seconds=5, _preload_content=False)
    got = b""
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
        while True:
            chunk = await resp.content.read(100)
            if not chunk:
                break
            got += chunk
    assert 0 < len(got) <= one and got.count(b"\n") >= 1
    await wait_for(lambda: v1.read_namespaced_pod_log("m0", "default"), lambda log: "line 3\n" in log)
    cluster.faults.add(Fault(path=r"/pods/m0/log$", drop_after_bytes=20))
    resp = await v1.read_namespaced_pod_log("m0", "default", follow=True, _preload_content=False)
    got = b""
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
        while True:
            chunk = await resp.content.read(10)
            if not chunk:
                break
            got += chunk
    assert got == b"line 1\nline 2\nline 3\nline"[:20]


async def test_watch_closed_early(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    cluster.faults.add(Fault(path=r"/pods$", query="watch=true", watch_close_after=0.3))
    t0 = time.monotonic()
    resp = await v1.list_namespaced_pod("default", watch=True, timeout_seconds=30, _preload_content=False)
    assert await asyncio.wait_for(resp.read(), 5) == b""
    assert time.monotonic() - t0 < 2


async def test_watch_gone(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    listed = await v1.list_namespaced_pod("default")
    cluster.faults.add(Fault(path=r"/pods$", query="watch=true", watch_gone=True))
    w = watch.Watch()
    with pytest.raises(ApiException) as e:
        async for _ in w.stream(
            v1.list_namespaced_pod,
            "default",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=5,
        ):
            pass
    await w.close()
    assert e.value.status == 410
    assert e.value.reason.startswith(
        f"Expired: too old resource version: {listed.metadata.resource_version} ("
    )


async def test_faults_over_http(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    async with SimControl(cluster.kubeconfig_path) as ctl:
        fid = await ctl.add_fault(Fault(method="GET", path="/api/v1/namespaces$", status=500, times=None))
        assert [f["id"] for f in await ctl.faults()] == [fid]
        for _ in range(3):
            with pytest.raises(ApiException) as e:
                await v1.list_namespace()
            assert e.value.status == 500
        assert (await ctl.faults())[0]["hits"] == 3
        await ctl.clear_faults()
        assert await ctl.faults() == []
        await v1.list_namespace()
        fid = await ctl.add_fault({"path": "/api/v1/nodes$", "latency": 0.3, "times": 5})
        await ctl.remove_fault(fid)
        with pytest.raises(RuntimeError):
            await ctl.add_fault({"path": "/x", "bogus": 1})
