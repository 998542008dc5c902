"""Fixtures for the e2e tests against the real control plane (etcd, apiserver, controller manager, kwok).

The control plane is started outside pytest (`make cluster-up`, i.e. `tools/cluster.sh up`) and found
through ``KPO_ASYNC_CLUSTER_DIR`` (default ``/tmp/kpo-async-cluster``). If it is not running, every e2e
test fails (not skips) with the command to run. Run the suite with
``.venv/bin/python -m pytest -m e2e tests/e2e``.

How pods behave there is set with pod annotations (docs/real-control-plane.md, "Annotation contract"):
``kwok.kpo-async.io/duration``, ``exit-code``, ``reason``, ``message``, ``pending``, ``logs``, ``xcom``.
A test can also write a pod's container log and XCom file itself, before or after creating the pod,
with `Cluster.write_log` / `Cluster.write_xcom`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.rest import ApiException

from kpo_async.testing import harness

REPO = Path(__file__).resolve().parents[2]
#: Where the e2e pods run: "kwok" (`make e2e`: kwok fakes the kubelet, podfiles emulates the shell) or
#: "real" (`make e2e-node`: kubelet + containerd + runc of tools/node.sh run real containers).
NODE_TARGET = os.environ.get("KPO_ASYNC_E2E_NODE", "kwok")
ON_REAL_NODE = NODE_TARGET == "real"
NAMESPACE = "kpo-async-e2e"
SIDECAR = "airflow-xcom-sidecar"
ANN = "kwok.kpo-async.io/"


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def cri_line(ts: dt.datetime, text: str, stream: str = "stdout") -> str:
    """One CRI log line: ``2026-11-27T01:02:03.000000000Z stdout F hello``."""
    ts = _utc(ts).astimezone(dt.timezone.utc)
    return f"{ts.strftime('%Y-%m-%dT%H:%M:%S')}.{ts.microsecond * 1000:09d}Z {stream} F {text}\n"


@dataclass
class ExecResult:
    stdout: str
    stderr: str
    status: dict[str, Any] | None  # the Status on the error channel (3), None if there was none

    @property
    def exit_code(self) -> int:
        if self.status is None or self.status.get("status") == "Success":
            return 0
        if self.status.get("reason") == "NonZeroExitCode":
            return int(self.status["details"]["causes"][0]["message"])
        raise AssertionError(f"exec failed without an exit code: {self.status}")


@dataclass
class Cluster:
    """The running control plane: kubeconfigs and the per-pod file area kwok serves from."""

    dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        """ServiceAccount kpo-async-e2e/kpo-async bound to the Role of docs/rbac.md."""
        return self.dir / "operator.kubeconfig"

    @property
    def missing_perm_kubeconfig(self) -> Path:
        """ServiceAccount kpo-async-e2e/kpo-async-no-exec: the same Role without pods/exec."""
        return self.dir / "missing-perm.kubeconfig"

    @property
    def namespace(self) -> str:
        return self.env.get("KPO_ASYNC_NAMESPACE", NAMESPACE)

    @property
    def kubectl(self) -> Path:
        return Path(self.env["KPO_ASYNC_BIN_DIR"]) / "kubectl"

    def pod_dir(self, pod: str, namespace: str | None = None) -> Path:
        return self.dir / "pods" / (namespace or self.namespace) / pod

    def _ensure_pod_dirs(self, pod: str, namespace: str | None) -> Path:
        d = self.pod_dir(pod, namespace)
        xcom = d / "root" / "airflow" / "xcom"
        (d / "logs").mkdir(parents=True, exist_ok=True)
        xcom.mkdir(parents=True, exist_ok=True)
        # The exec shim may run as `nobody`: the XCom directory is where it writes the stop marker.
        xcom.chmod(0o777)
        return d

    def write_log(
        self,
        pod: str,
        lines: Iterable[str | tuple[dt.datetime, str]],
        container: str = "base",
        namespace: str | None = None,
        start: dt.datetime | None = None,
        append: bool = True,
    ) -> list[dt.datetime]:
        """Append CRI-format lines to the log kwok serves for ``container``; returns their timestamps.

        Plain strings get timestamps ``start`` (default now) + 1 ms per line; ``(timestamp, text)`` pairs
        keep theirs. A followed log stream (``follow=true``) sees appended lines as they are written.
        """
        d = self._ensure_pod_dirs(pod, namespace)
        start = _utc(start or dt.datetime.now(dt.timezone.utc))
        stamps, out = [], []
        for i, item in enumerate(lines):
            ts, text = item if isinstance(item, tuple) else (start + dt.timedelta(milliseconds=i), item)
            stamps.append(_utc(ts))
            out.append(cri_line(ts, text))
        with open(d / "logs" / f"{container}.log", "a" if append else "w") as f:
            f.write("".join(out))
        return stamps

    def write_xcom(self, pod: str, content: str | bytes, namespace: str | None = None) -> Path:
        """Write what ``cat /airflow/xcom/return.json`` in the pod returns."""
        d = self._ensure_pod_dirs(pod, namespace)
        path = d / "root" / "airflow" / "xcom" / "return.json"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        path.chmod(0o644)
        return path

    def sidecar_stop_marker(self, pod: str, namespace: str | None = None) -> Path:
        return self.pod_dir(pod, namespace) / "root" / "airflow" / "xcom" / ".kpo-async-done"

    def run_kubectl(self, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.kubectl), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    async def api_client(self, kubeconfig: Path | None = None) -> client.ApiClient:
        cfg = client.Configuration()
        await config.load_kube_config(
            config_file=str(kubeconfig or self.admin_kubeconfig), client_configuration=cfg
        )
        assert cfg.verify_ssl, "e2e kubeconfigs must verify TLS"
        return client.ApiClient(cfg)


def _not_running(cluster_dir: Path, why: str) -> None:
    pytest.fail(
        f"The real control plane is not running ({why}; KPO_ASYNC_CLUSTER_DIR={cluster_dir}).\n"
        "Start it with:  make cluster-up      (or: tools/cluster.sh up)\n"
        "then run:       .venv/bin/python -m pytest -m e2e tests/e2e\n"
        "and stop it:    make cluster-down    (or: tools/cluster.sh down)\n"
        "`make e2e` does all three.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    d = Path(os.environ.get("KPO_ASYNC_CLUSTER_DIR", "/tmp/kpo-async-cluster"))
    env_file = d / "cluster.env"
    if not env_file.is_file():
        _not_running(d, f"no {env_file}")
    env = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#"
    )
    status = subprocess.run(
        [str(REPO / "tools" / "cluster.sh"), "status"],
        capture_output=True,
        text=True,
        env={**os.environ, "KPO_ASYNC_CLUSTER_DIR": str(d)},
        timeout=60,
    )
    if status.returncode != 0:
        _not_running(d, "tools/cluster.sh status says:\n" + status.stdout + status.stderr)
    if ON_REAL_NODE:
        node = subprocess.run(
            [str(REPO / "tools" / "node.sh"), "status"],
            capture_output=True,
            text=True,
            env={**os.environ, "KPO_ASYNC_CLUSTER_DIR": str(d)},
            timeout=60,
        )
        if node.returncode != 0:
            pytest.fail(
                "KPO_ASYNC_E2E_NODE=real but the real node is not up:\n"
                + node.stdout
                + node.stderr
                + "\nStart it with `make node-up` and send pods to it with `tools/node.sh target real`"
                " (`make e2e-node` does both).",
                pytrace=False,
            )
    return Cluster(dir=d, env=env)


@pytest.fixture(autouse=True)
def _node_target(request: pytest.FixtureRequest) -> None:
    """`kwok_only` tests rely on kwok's annotation contract or podfiles' emulation; `real_node` tests
    need real containers (OOM kills, init containers). Each is skipped on the other node."""
    if ON_REAL_NODE and request.node.get_closest_marker("kwok_only"):
        pytest.skip("kwok-only: drives the pod through kwok annotations or podfiles' emulation")
    if not ON_REAL_NODE and request.node.get_closest_marker("real_node"):
        pytest.skip("needs real containers: runs under `make e2e-node`")


@pytest.fixture
async def admin_api(cluster: Cluster) -> AsyncIterator[client.ApiClient]:
    api = await cluster.api_client()
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def operator_api(cluster: Cluster) -> AsyncIterator[client.ApiClient]:
    api = await cluster.api_client(cluster.operator_kubeconfig)
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def missing_perm_api(cluster: Cluster) -> AsyncIterator[client.ApiClient]:
    api = await cluster.api_client(cluster.missing_perm_kubeconfig)
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
def pod_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Unique, valid pod names for this test."""

    def make(prefix: str = "e2e") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
async def cleanup_pods(cluster: Cluster, admin_api: client.ApiClient) -> AsyncIterator[list[str]]:
    """Append pod names to have them deleted (grace period 0, kpo-async's finalizer removed first)
    after the test."""
    names: list[str] = []
    yield names
    v1 = client.CoreV1Api(admin_api)
    release = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["kpo-async.io/task-seen"]}}
    for name in names:
        try:
            await v1.patch_namespaced_pod(  # type: ignore[call-arg]
                name, cluster.namespace, release, _content_type="application/strategic-merge-patch+json"
            )
            await v1.delete_namespaced_pod(name, cluster.namespace, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                raise


async def wait_for_namespace_setup(api: client.ApiClient, namespace: str, timeout: float = 60) -> None:
    """Wait for what kube-controller-manager adds to a new namespace: the `default` ServiceAccount
    (pods that name no ServiceAccount are refused until it exists) and the kube-root-ca.crt ConfigMap
    (mounted by service-account token volumes)."""
    v1 = client.CoreV1Api(api)
    deadline = asyncio.get_running_loop().time() + timeout
    for read, name in (
        (v1.read_namespaced_service_account, "default"),
        (v1.read_namespaced_config_map, "kube-root-ca.crt"),
    ):
        while True:
            try:
                await read(name, namespace)
                break
            except ApiException as e:
                if e.status != 404:
                    raise
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"{name} did not appear in new namespace {namespace} within {timeout}s: "
                    "is kube-controller-manager running (tools/cluster.sh status)?"
                )
            await asyncio.sleep(0.2)


@pytest.fixture
async def fresh_namespace(admin_api: client.ApiClient) -> AsyncIterator[str]:
    """A new namespace, ready for pods (see `wait_for_namespace_setup`); deleted after the test (the
    namespace controller removes what is left in it)."""
    name = f"kpo-e2e-{uuid.uuid4().hex[:8]}"
    v1 = client.CoreV1Api(admin_api)
    await v1.create_namespace({"metadata": {"name": name, "labels": {"app": "kpo-async-e2e"}}})
    try:
        await wait_for_namespace_setup(admin_api, name)
        yield name
    finally:
        try:
            await v1.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


def pod_manifest(
    name: str,
    annotations: dict[str, str] | None = None,
    *,
    image: str = "busybox:1.36",
    sidecar: bool = True,
) -> dict[str, Any]:
    """A pod shaped like the operator's: container ``base`` first, then the XCom sidecar."""
    containers: list[dict[str, Any]] = [
        {"name": "base", "image": image, "command": ["sh", "-c", "echo hello"]},
    ]
    if sidecar:
        containers.append(
            {
                "name": SIDECAR,
                "image": "alpine:3.20",
                "command": ["sh", "-c", "until [ -e /airflow/xcom/.kpo-async-done ]; do sleep 1; done"],
                "volumeMounts": [{"name": "xcom", "mountPath": "/airflow/xcom"}],
            }
        )
        containers[0]["volumeMounts"] = [{"name": "xcom", "mountPath": "/airflow/xcom"}]
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": containers}
    if sidecar:
        spec["volumes"] = [{"name": "xcom", "emptyDir": {}}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}, "labels": {"app": "kpo-async-e2e"}},
        "spec": spec,
    }


async def wait_for_pod(
    api: client.ApiClient,
    namespace: str,
    name: str,
    predicate: Callable[[client.V1Pod], bool],
    timeout: float = 30,
    what: str = "condition",
) -> client.V1Pod:
    """Watch one pod until ``predicate(pod)`` holds; returns that pod."""
    v1 = client.CoreV1Api(api)
    pod = await v1.read_namespaced_pod(name, namespace)
    if predicate(pod):
        return pod
    rv = pod.metadata.resource_version
    last = pod

    async def follow() -> client.V1Pod | None:
        nonlocal rv, last
        while True:
            async with watch.Watch() as w:  # closes the Watch's own ApiClient and the response
                async for ev in w.stream(
                    v1.list_namespaced_pod,
                    namespace,
                    field_selector=f"metadata.name={name}",
                    resource_version=rv,
                    timeout_seconds=max(1, int(timeout)),
                ):
                    obj = ev["object"]
                    if ev["type"] == "ERROR":
                        raise AssertionError(f"watch error: {obj}")
                    rv = obj.metadata.resource_version
                    last = obj
                    if ev["type"] != "DELETED" and predicate(obj):
                        return obj

    try:
        return await asyncio.wait_for(follow(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(
            f"pod {namespace}/{name}: timed out after {timeout}s waiting for {what}; last status: "
            f"{last.status.to_dict() if last and last.status else None}"
        ) from None


def container_status(pod: client.V1Pod, name: str) -> client.V1ContainerStatus:
    for s in pod.status.container_statuses or []:
        if s.name == name:
            return s
    raise AssertionError(f"no status for container {name!r} in {pod.metadata.name}")


def _ssl_context(cfg: client.Configuration) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    return ctx


def _auth_headers(cfg: client.Configuration) -> dict[str, str]:
    """The bearer token of a token kubeconfig (kubernetes_asyncio keeps it as api_key["BearerToken"])."""
    for key in ("BearerToken", "authorization"):
        token = (cfg.api_key or {}).get(key)
        if token:
            prefix = (cfg.api_key_prefix or {}).get(key)
            return {"Authorization": f"{prefix} {token}" if prefix else token}
    return {}


async def ws_exec(
    api: client.ApiClient, namespace: str, pod: str, container: str, command: list[str], timeout: float = 30
) -> ExecResult:
    """Exec over the API server's WebSocket endpoint (GET .../exec, ``v4.channel.k8s.io``).

    Raises ``aiohttp.WSServerHandshakeError`` (with ``.status``) when the API server refuses the upgrade.
    """
    cfg = api.configuration
    query = [("container", container), ("stdout", "true"), ("stderr", "true")]
    query += [("command", c) for c in command]
    url = f"{cfg.host}/api/v1/namespaces/{namespace}/pods/{pod}/exec"
    out, err, status = [], [], None
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            url.replace("https://", "wss://", 1),
            params=query,
            protocols=("v4.channel.k8s.io",),
            ssl=_ssl_context(cfg),
            headers=_auth_headers(cfg),
            timeout=aiohttp.ClientWSTimeout(ws_receive=timeout, ws_close=5),
        ) as ws:
            async for msg in ws:
                if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    break
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                if channel == 1:
                    out.append(payload)
                elif channel == 2:
                    err.append(payload)
                elif channel == 3 and payload:
                    status = json.loads(payload)
    return ExecResult(b"".join(out).decode(), b"".join(err).decode(), status)


WS_UPGRADE_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Protocol": "v4.channel.k8s.io",
}


async def raw_request(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    ws_upgrade: bool = False,
) -> tuple[int, str, dict[str, str]]:
    """A plain HTTPS request with the client's credentials: (status, body text, headers).

    ``ws_upgrade=True`` sends the WebSocket upgrade headers, to see the body of a refused exec upgrade
    exactly as a WebSocket client receives it.
    """
    cfg = api.configuration
    hdrs = {"Accept": "application/json", **_auth_headers(cfg), **(headers or {})}
    if ws_upgrade:
        hdrs.pop("Accept")  # a WebSocket client sends none
        hdrs.update(WS_UPGRADE_HEADERS)
    async with aiohttp.ClientSession() as session:
        async with session.request(
            method,
            cfg.host + path,
            ssl=_ssl_context(cfg),
            headers=hdrs,
            data=json.dumps(body) if body is not None else None,
        ) as resp:
            return resp.status, await resp.text(), dict(resp.headers)


async def stream_lines(
    api: client.ApiClient, path: str, *, max_lines: int | None = None, timeout: float = 30
) -> tuple[int, list[str]]:
    """GET a streaming endpoint (log follow, watch) and collect lines until it ends (or max_lines)."""
    cfg = api.configuration
    lines: list[str] = []

    async def read() -> int:
        async with aiohttp.ClientSession() as session:
            async with session.get(
                cfg.host + path, ssl=_ssl_context(cfg), headers=_auth_headers(cfg)
            ) as resp:
                if resp.status != 200:
                    lines.append(await resp.text())
                    return resp.status
                async for raw in resp.content:
                    lines.append(raw.decode().rstrip("\n"))
                    if max_lines is not None and len(lines) >= max_lines:
                        break
                return resp.status

    code = await asyncio.wait_for(read(), timeout)
    return code, lines


@pytest.fixture(scope="session")
def observed_facts(cluster: Cluster) -> Iterable[dict[str, Any]]:
    """Real-server responses collected by the tests, written as JSON to ``$KPO_ASYNC_FACTS_OUT``
    (default build/e2e/observed-api-facts.json; build/ is git-ignored) so they survive `cluster.sh down`."""
    facts: dict[str, Any] = {}
    yield facts
    if facts:
        out = Path(os.environ.get("KPO_ASYNC_FACTS_OUT", REPO / "build" / "e2e" / "observed-api-facts.json"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------------
# Running the operator (and Airflow) against the real control plane


#: `python -c AIRFLOW_LAUNCHER dags test ...`: the airflow CLI of this interpreter.
AIRFLOW_LAUNCHER = (
    "import sys\nfrom airflow.__main__ import main\nsys.argv = ['airflow', *sys.argv[1:]]\nsys.exit(main())\n"
)


def kubectl_json(cluster: Cluster, *args: str, kubeconfig: Path | None = None) -> Any:
    """`kubectl ... -o json` (admin by default), parsed."""
    out = cluster.run_kubectl(*args, "-o", "json", kubeconfig=kubeconfig)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def live_pods(cluster: Cluster, selector: str | None = None, namespace: str | None = None) -> list[dict]:
    """Pods that exist and are not being deleted (seen with the admin kubeconfig)."""
    return harness.live_pods(
        cluster.admin_kubeconfig, selector=selector, namespace=namespace or cluster.namespace
    )


def emulation_record(cluster: Cluster, pod: str, namespace: str | None = None) -> dict[str, Any] | None:
    """What tools/kwok/podfiles.py's shell emulation did for a pod (while its directory exists)."""
    path = cluster.pod_dir(pod, namespace) / "emulation.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
