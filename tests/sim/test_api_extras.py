"""Less central API paths: pagination, deletecollection, eviction subresource, namespace deletion,
event watches, exec v5 framing, behaviour-log details, the speed factor."""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.testing.sim import SimCluster, SimConfig

from .conftest import FAST, _client_config, base_done_sidecar_running, pod_manifest, wait_for, wait_phase

BEHAVIOR = "sim.kpo-async.io/behavior"


async def test_pagination(v1: client.CoreV1Api) -> None:
    for i in range(5):
        await v1.create_namespaced_pod("default", pod_manifest(f"pg{i}", "sleep 10"))
    first = await v1.list_namespaced_pod("default", limit=2)
    assert [p.metadata.name for p in first.items] == ["pg0", "pg1"]
    assert first.metadata.remaining_item_count == 3 and first.metadata._continue
    second = await v1.list_namespaced_pod("default", limit=2, _continue=first.metadata._continue)
    assert [p.metadata.name for p in second.items] == ["pg2", "pg3"]
    third = await v1.list_namespaced_pod("default", limit=2, _continue=second.metadata._continue)
    assert [p.metadata.name for p in third.items] == ["pg4"] and not third.metadata._continue


async def test_deletecollection_and_eviction_subresource(v1: client.CoreV1Api) -> None:
    for i in range(3):
        await v1.create_namespaced_pod(
            "default", pod_manifest(f"dc{i}", "true", labels={"batch": "x" if i < 2 else "y"})
        )
    await v1.delete_collection_namespaced_pod("default", label_selector="batch=x", grace_period_seconds=0)
    left = [p.metadata.name for p in (await v1.list_namespaced_pod("default")).items]
    assert left == ["dc2"]
    await v1.create_namespaced_pod("default", pod_manifest("evs", "sleep 30"))
    await wait_phase(v1, "evs", ("Running",))
    await v1.create_namespaced_pod_eviction(
        "evs", "default", {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "evs"}}
    )
    pod = await v1.read_namespaced_pod("evs", "default")
    assert pod.metadata.deletion_timestamp is not None


async def test_namespace_deletion(v1: client.CoreV1Api) -> None:
    await v1.create_namespace({"metadata": {"name": "tmp-ns"}})
    await v1.create_namespaced_pod("tmp-ns", pod_manifest("p", "sleep 30"))
    await wait_phase(v1, "p", ("Running",), ns="tmp-ns")
    resp = await v1.delete_namespace("tmp-ns", _preload_content=False)  # the client types it as V1Status
    assert json.loads(await resp.read())["status"]["phase"] == "Terminating"
    with pytest.raises(ApiException) as e:
        await v1.create_namespaced_pod("tmp-ns", pod_manifest("q", "true"))
    assert e.value.status == 403 and "because it is being terminated" in e.value.body

    async def gone() -> bool:
        try:
            await v1.read_namespace("tmp-ns")
            return False
        except ApiException as e:
            return e.status == 404

    await wait_for(gone, bool, timeout=10)
    with pytest.raises(ApiException) as e:
        await v1.delete_namespace("default")
    assert e.value.status == 403


async def test_watch_events(v1: client.CoreV1Api) -> None:
    resp = await v1.list_namespaced_event(
        "default",
        watch=True,
        field_selector="involvedObject.name=we",
        timeout_seconds=5,
        _preload_content=False,
    )
    await v1.create_namespaced_pod("default", pod_manifest("we", "true"))
    reasons = []
    while "Started" not in reasons:
        ev = json.loads(await asyncio.wait_for(resp.content.readline(), 5))
        assert ev["object"]["kind"] == "Event"
        reasons.append(ev["object"]["reason"])
    resp.release()
    assert reasons[0] == "Scheduled"


async def test_exec_v5_close_stdin(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("v5", "sleep 30"))
    await wait_phase(v1, "v5", ("Running",))
    url = (
        cluster.base_url.replace("https", "wss")
        + "/api/v1/namespaces/default/pods/v5/exec?command=cat&stdin=true&stdout=true&stderr=true"
    )
    ctx = ssl.create_default_context(cafile=cluster.ca_path)
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(
            url,
            protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"),
            headers={"Authorization": f"Bearer {cluster.token}"},
            ssl=ctx,
        ) as ws:
            assert ws.protocol == "v5.channel.k8s.io"
            await ws.send_bytes(b"\x00some input")
            await ws.send_bytes(b"\xff\x00")  # v5: close stdin
            out, status = b"", None
            async for msg in ws:
                if msg.data[:1] == b"\x01":
                    out += msg.data[1:]
                elif msg.data[:1] == b"\x03" and len(msg.data) > 1:
                    status = json.loads(msg.data[1:])
    assert out == b"some input"
    assert status == {"metadata": {}, "status": "Success"}


async def test_behaviour_log_details(v1: client.CoreV1Api) -> None:
    spec = {
        "duration_seconds": 0.3,
        "log_lines_per_second": 10,
        "log_line": '{"n": {i}}',
        "log_invalid_utf8": True,
        "log_final_newline": False,
        "xcom_raw": "{not json",
    }
    await v1.create_namespaced_pod(
        "default", pod_manifest("bd", None, sidecar=True, annotations={BEHAVIOR: json.dumps(spec)})
    )
    await wait_phase(v1, "bd", ("Running",))
    resp = await v1.read_namespaced_pod_log(
        "bd", "default", container="base", follow=True, _preload_content=False
    )
    data = await asyncio.wait_for(resp.read(), 5)
    assert data == b'{"n": 1} \xff\xfe\n{"n": 2} \xff\xfe\n{"n": 3} \xff\xfe'


async def test_behaviour_xcom_raw(v1: client.CoreV1Api, ws_v1: client.CoreV1Api) -> None:
    spec = {"duration_seconds": 0.1, "xcom_raw": "{not json"}
    await v1.create_namespaced_pod(
        "default", pod_manifest("br", None, sidecar=True, annotations={BEHAVIOR: json.dumps(spec)})
    )
    await wait_for(
        lambda: v1.read_namespaced_pod("br", "default"),
        base_done_sidecar_running,
    )
    text = await ws_v1.connect_get_namespaced_pod_exec(
        "br",
        "default",
        container="airflow-xcom-sidecar",
        command=["cat", "/airflow/xcom/return.json"],
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
    )
    assert text == "{not json"


async def test_speed_factor() -> None:
    slow = SimConfig(sandbox_delay=(1.0, 1.0), pull_delay=1.0, speed=10.0)
    async with SimCluster(slow) as cluster, client.ApiClient(await _client_config(cluster)) as api:
        v1 = client.CoreV1Api(api)
        t0 = time.monotonic()
        await v1.create_namespaced_pod("default", pod_manifest("fast", "true"))
        await wait_phase(v1, "fast", ("Succeeded",))
        assert time.monotonic() - t0 < 1.0  # 1 s sandbox + 1 s pull at 10x speed
    assert FAST  # the fast defaults the other tests use
