"""Serving: auth, TLS, kubeconfig, stats, discovery, the background-thread mode and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from kubernetes_asyncio import client, watch

from kpo_async.testing.sim import SimCluster, SimConfig
from kpo_async.testing.sim.control import SimControl
from kpo_async.testing.sim.tls import generate, server_context

from .conftest import FAST, pod_manifest, raw_request, wait_phase


async def test_kubeconfig_names_and_tls(cluster: SimCluster) -> None:
    with open(cluster.kubeconfig_path) as f:  # noqa: ASYNC230 - a tiny local file
        kc = yaml.safe_load(f)
    assert kc == cluster.kubeconfig
    assert kc["current-context"] == "kpo-async-sim"
    assert kc["contexts"][0] == {
        "name": "kpo-async-sim",
        "context": {"cluster": "kpo-async-sim", "user": "kpo-async-sim", "namespace": "default"},
    }
    assert kc["clusters"][0]["name"] == "kpo-async-sim" and kc["users"][0]["name"] == "kpo-async-sim"
    assert kc["clusters"][0]["cluster"]["server"] == cluster.base_url
    assert cluster.base_url.startswith("https://127.0.0.1:")
    assert kc["users"][0]["user"] == {"token": cluster.token}
    assert cluster.ca_path and os.path.exists(cluster.ca_path)  # noqa: ASYNC240
    # the certificate verifies against the CA for both 127.0.0.1 and localhost
    ctx = ssl.create_default_context(cafile=cluster.ca_path)
    async with aiohttp.ClientSession() as s:
        for host in ("127.0.0.1", "localhost"):
            url = cluster.base_url.replace("127.0.0.1", host) + "/version"
            async with s.get(url, ssl=ctx) as r:
                assert r.status == 200 and (await r.json())["major"] == "1"
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await s.get(cluster.base_url + "/version", ssl=ssl.create_default_context())


async def _has_session_ticket(host: str, port: int, ca_path: str) -> bool:
    """Whether a client holds a TLS session ticket once a request on its connection is answered."""
    context = ssl.create_default_context(cafile=ca_path)
    reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname="127.0.0.1")
    try:
        writer.write(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert b" 200 " in await reader.readline()
        await reader.read()  # TLS 1.3 sends tickets after the handshake, so read to the end
        tls = writer.get_extra_info("ssl_object")
        assert tls.version() == "TLSv1.3"
        return bool(tls.session.has_ticket)
    finally:
        writer.close()


async def test_tls_sends_no_session_ticket(cluster: SimCluster, tmp_path: Path) -> None:
    # Python's default sends TLS 1.3 tickets a client keeps (more memory per connection than
    # against kube-apiserver): the embedded cluster sends none, so the bench measures the client.
    assert cluster.ca_path
    port = int(cluster.base_url.rsplit(":", 1)[1])
    assert not await _has_session_ticket("127.0.0.1", port, cluster.ca_path)

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"major": "1"})

    app = web.Application()  # with Python's default tickets, the same check finds one
    app.router.add_get("/version", version)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    files = generate(str(tmp_path))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(files, session_tickets=True))
    await site.start()
    try:
        assert await _has_session_ticket("127.0.0.1", runner.addresses[0][1], files.ca_path)
    finally:
        await runner.cleanup()


async def test_bearer_token_required(cluster: SimCluster) -> None:
    status, _, body = await raw_request(cluster, "GET", "/api/v1/namespaces/default/pods", token=False)
    assert status == 401
    assert json.loads(body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    status, _, _ = await raw_request(cluster, "GET", "/api/v1/namespaces/default/pods", token="nope")
    assert status == 401
    status, _, _ = await raw_request(cluster, "GET", "/sim/v1/stats", token=False)
    assert status == 401
    status, _, _ = await raw_request(cluster, "GET", "/version", token=False)
    assert status == 200


async def test_no_tls_no_auth() -> None:
    async with SimCluster(SimConfig(tls=False, auth=False, **FAST)) as cluster:  # type: ignore[arg-type]
        assert cluster.base_url.startswith("http://127.0.0.1:") and cluster.ca_path is None
        kc = cluster.kubeconfig
        assert (
            "certificate-authority-data" not in kc["clusters"][0]["cluster"] and kc["users"][0]["user"] == {}
        )
        status, _, body = await raw_request(cluster, "GET", "/api/v1/namespaces", token=False)
        assert status == 200 and json.loads(body)["kind"] == "NamespaceList"


async def test_discovery_and_unknown_paths(cluster: SimCluster) -> None:
    status, _, body = await raw_request(cluster, "GET", "/api/v1")
    resources = {r["name"]: r for r in json.loads(body)["resources"]}
    assert {"pods", "pods/log", "pods/exec", "events", "namespaces", "nodes"} <= set(resources)
    assert resources["pods"]["namespaced"] is True and "watch" in resources["pods"]["verbs"]
    status, _, body = await raw_request(cluster, "GET", "/api")
    assert json.loads(body)["versions"] == ["v1"]
    status, _, body = await raw_request(cluster, "GET", "/apis/batch/v1/jobs")
    assert status == 404 and json.loads(body)["message"] == "the server could not find the requested resource"


async def test_stats(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    cluster.stats.reset()
    await v1.create_namespaced_pod("default", pod_manifest("s1", "echo hi; sleep 5"))
    await wait_phase(v1, "s1", ("Running",))
    await v1.list_namespaced_pod("default")
    await v1.read_namespaced_pod_log("s1", "default")
    await v1.patch_namespaced_pod("s1", "default", {"metadata": {"labels": {"x": "y"}}})
    await v1.list_namespaced_event("default")
    w = watch.Watch()
    seen = asyncio.Event()
    snapshot_during: dict = {}

    async def run() -> None:
        async for _ in w.stream(v1.list_namespaced_pod, "default", timeout_seconds=2):
            if not seen.is_set():
                snapshot_during.update(cluster.stats.snapshot())
                seen.set()

    await run()
    await v1.delete_namespaced_pod("s1", "default")
    snap = cluster.stats.snapshot()
    req = snap["requests"]
    assert req["create pods"] == 1 and req["list pods"] == 1 and req["watch pods"] == 1
    assert req["get pods/log"] == 1 and req["patch pods"] == 1 and req["list events"] == 1
    assert req["delete pods"] == 1 and req["get pods"] >= 1
    assert snapshot_during["open_watches"] == 1 and snap["open_watches"] == 0
    assert snap["connections_opened"] >= 1
    async with SimControl(cluster.kubeconfig_path) as ctl:
        over_http = await ctl.stats()
        assert over_http["requests"]["create pods"] == 1
        reset = await ctl.reset_stats()
        assert reset["requests"] == {} and reset["connections_opened"] == 0


def test_in_thread_with_sync_client() -> None:
    from kubernetes import client as sync_client
    from kubernetes import config as sync_config

    with SimCluster(SimConfig(**FAST)).in_thread() as cluster:  # type: ignore[arg-type]
        api = sync_config.new_client_from_config(config_file=cluster.kubeconfig_path)
        v1 = sync_client.CoreV1Api(api)
        v1.create_namespaced_pod("airflow", pod_manifest("t1", "echo threaded"))
        import time

        for _ in range(200):
            if v1.read_namespaced_pod("t1", "airflow").status.phase == "Succeeded":
                break
            time.sleep(0.02)
        # (this client version returns str(bytes) for logs when preloading; read the raw body)
        assert v1.read_namespaced_pod_log("t1", "airflow", _preload_content=False).data == b"threaded\n"
        cluster.evict  # noqa: B018 - thread-safe helper exists
        assert cluster.stats.snapshot()["requests"]["create pods"] == 1
        api.close()


async def test_cli_process(tmp_path: object) -> None:
    path = os.path.join(tempfile.mkdtemp(), "sim", "kubeconfig")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kpo_async.testing.sim",
        "--kubeconfig",
        path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)  # type: ignore[union-attr]
        assert line.decode().strip() == f"kubeconfig: {path}"
        async with SimControl(path) as ctl:
            assert (await ctl.stats())["open_watches"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
    assert rc == 0
