"""Fixtures: a fresh embedded cluster per test, and kubernetes-asyncio clients pointed at it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.stream import WsApiClient

from kpo_async.testing.harness import wait_for
from kpo_async.testing.sim import SimCluster, SimConfig

FAST = dict(
    sandbox_delay=(0.01, 0.03), pull_delay=0.02, backoff_initial=0.2, backoff_max=0.5, bookmark_interval=0.3
)


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(**FAST)  # type: ignore[arg-type]


@pytest.fixture
async def cluster(sim_config: SimConfig) -> AsyncIterator[SimCluster]:
    async with SimCluster(sim_config) as c:
        yield c


async def _client_config(cluster: SimCluster) -> client.Configuration:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=cluster.kubeconfig_path, client_configuration=cfg)
    return cfg


@pytest.fixture
async def api(cluster: SimCluster) -> AsyncIterator[client.ApiClient]:
    async with client.ApiClient(await _client_config(cluster)) as a:
        yield a


@pytest.fixture
def v1(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
async def ws_v1(cluster: SimCluster) -> AsyncIterator[client.CoreV1Api]:
    ws = WsApiClient(configuration=await _client_config(cluster))
    try:
        yield client.CoreV1Api(ws)
    finally:
        await ws.close()


def pod_manifest(
    name: str,
    script: str | None = None,
    *,
    image: str = "alpine:3.20",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    sidecar: bool = False,
    restart_policy: str = "Never",
    **spec: Any,
) -> dict[str, Any]:
    """A pod like the operator creates: base container (+ XCom sidecar), emptyDir on /airflow/xcom."""
    from kpo_async.identity import XCOM_MOUNT_PATH, XCOM_SIDECAR_NAME, XCOM_SIDECAR_SCRIPT

    mounts = [{"name": "xcom", "mountPath": XCOM_MOUNT_PATH}]
    base: dict[str, Any] = {"name": "base", "image": image, "volumeMounts": mounts}
    if script is not None:
        base["command"] = ["sh", "-c", script]
    containers = [base]
    if sidecar:
        containers.append(
            {
                "name": XCOM_SIDECAR_NAME,
                "image": "alpine:3.20",
                "command": ["sh", "-c", XCOM_SIDECAR_SCRIPT],
                "volumeMounts": [dict(m) for m in mounts],
            }
        )
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "restartPolicy": restart_policy,
            "volumes": [{"name": "xcom", "emptyDir": {}}],
            "containers": containers,
        },
    }
    body["spec"].update(spec)
    return body


async def wait_phase(
    v1: client.CoreV1Api, name: str, phases: tuple[str, ...], ns: str = "default", timeout: float = 10.0
) -> Any:
    return await wait_for(
        lambda: v1.read_namespaced_pod(name, ns), lambda p: p.status.phase in phases, timeout=timeout
    )


async def raw_request(
    cluster: SimCluster,
    method: str,
    path: str,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    token: str | bool | None = True,
) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTPS request with the cluster's CA (and token unless token=False)."""
    import ssl

    import aiohttp

    hdrs = dict(headers or {})
    if token is True:
        hdrs["Authorization"] = f"Bearer {cluster.token}"
    elif isinstance(token, str):
        hdrs["Authorization"] = f"Bearer {token}"
    ssl_ctx = ssl.create_default_context(cafile=cluster.ca_path) if cluster.ca_path else False
    async with aiohttp.ClientSession() as s:
        async with s.request(
            method, cluster.base_url + path, params=params, headers=hdrs, json=json_body, ssl=ssl_ctx
        ) as r:
            return r.status, dict(r.headers), await r.read()


def cstatus(pod: Any, name: str) -> Any:
    """The container status named `name` (the kubelet lists them sorted by name, not spec order)."""
    return next(s for s in pod.status.container_statuses or [] if s.name == name)


def base_done_sidecar_running(pod: Any) -> bool:
    statuses = {s.name: s for s in pod.status.container_statuses or []}
    base, sidecar = statuses.get("base"), statuses.get("airflow-xcom-sidecar")
    return bool(base and base.state.terminated and sidecar and sidecar.state.running)


async def run_exec(
    ws_v1: client.CoreV1Api, pod: str, command: list[str], container: str
) -> tuple[bytes, bytes, dict[str, Any]]:
    """Run a command in `container` over the exec WebSocket; returns (stdout, stderr, the error
    channel's Status)."""
    ctx = await ws_v1.connect_get_namespaced_pod_exec(
        pod,
        "default",
        container=container,
        command=command,
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
        _preload_content=False,
    )
    out, err, status = b"", b"", {}
    async with ctx as ws:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            ch, data = msg.data[0], msg.data[1:]
            if ch == 1:
                out += data
            elif ch == 2:
                err += data
            elif ch == 3 and data:
                status = json.loads(data)
    return out, err, status
