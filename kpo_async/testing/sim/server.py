"""`SimCluster`: the embedded cluster as an async context manager (or in a background thread)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import yaml
from aiohttp import web

from kpo_async.testing.sim.access import access_review_route, forbidden, request_target
from kpo_async.testing.sim.api import Api
from kpo_async.testing.sim.config import SimConfig
from kpo_async.testing.sim.control_api import ControlApi
from kpo_async.testing.sim.errors import ApiError, not_found, status_body
from kpo_async.testing.sim.events import EventRecorder
from kpo_async.testing.sim.faults import FAULT_KEY, Fault, FaultRegistry
from kpo_async.testing.sim.httpio import drop_connection, error_response, json_response
from kpo_async.testing.sim.kubelet import Kubelet
from kpo_async.testing.sim.nodes import NodeLifecycle
from kpo_async.testing.sim.objects import system_objects
from kpo_async.testing.sim.quota import QuotaController
from kpo_async.testing.sim.stats import Stats, classify
from kpo_async.testing.sim.store import Store
from kpo_async.testing.sim.tls import TlsFiles, generate, server_context
from kpo_async.testing.sim.util import fmt_time, new_uid
from kpo_async.testing.sim.validation import default_namespace

log = logging.getLogger("kpo_async.testing.sim")

NAME = "kpo-async-sim"
ANONYMOUS_PATHS = {"/version", "/version/", "/healthz", "/livez", "/readyz"}


class SimCluster:
    """The embedded Kubernetes API server + scheduler + kubelet.

    ``async with SimCluster(SimConfig()) as cluster:`` serves on 127.0.0.1 in the running loop;
    ``with SimCluster().in_thread() as cluster:`` runs it on a background thread's own loop.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.token: str = self.config.token or secrets.token_urlsafe(32)
        self.stats = Stats()
        self.faults = FaultRegistry()
        self.base_url = ""
        self.port = 0
        self.kubeconfig_path = ""
        self.kubeconfig: dict[str, Any] = {}
        self.ca_path: str | None = None
        self.workdir = ""
        self.store: Store | None = None
        self.kubelet: Kubelet | None = None
        self.events: EventRecorder | None = None
        self.quota: QuotaController | None = None
        self.nodes: NodeLifecycle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._api: Api | None = None
        self._tls: TlsFiles | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._owns_workdir = False

    # --- lifecycle ---
    async def __aenter__(self) -> SimCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        cfg = self.config
        self.loop = asyncio.get_running_loop()
        self.workdir = tempfile.mkdtemp(prefix="kpo-async-sim-")
        self._owns_workdir = True
        self.store = Store(cfg.watch_history, cfg.watch_queue_limit)
        self.events = EventRecorder(self.store, cfg.node_name, cfg.event_ttl)
        self.kubelet = Kubelet(cfg, self.store, self.events)
        for ns in cfg.namespaces:
            self.store.create("namespaces", default_namespace({"metadata": {"name": ns}}))
        for resource, body in system_objects(list(cfg.namespaces)):
            self.store.create(resource, body)
        self.store.create("nodes", self._node())
        self._api = Api(cfg, self.store, self.kubelet, self.events, self.stats)
        self.kubelet.delete_pod = self._api.delete_pod_now
        self.quota = QuotaController(self.store)
        self.nodes = NodeLifecycle(
            self.store, self.kubelet, self.events, self._node, self._api.delete_pod_now
        )
        control = ControlApi(self)

        app = web.Application(
            middlewares=[self._errors_mw, self._auth_mw, self._stats_faults_mw],
            client_max_size=64 * 1024 * 1024,
        )
        app.add_routes(self._api.routes())
        app.add_routes(control.routes())
        app.add_routes([access_review_route(self.config.denied)])
        ssl_ctx = None
        if cfg.tls:
            self._tls = generate(self.workdir)
            self.ca_path = self._tls.ca_path
            ssl_ctx = server_context(self._tls)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.2, handler_cancellation=True
        )
        await self._runner.setup()
        server = self._runner.server
        if server is not None:
            orig = server.connection_made

            def counted(handler: Any, transport: Any) -> None:
                self.stats.connection()
                orig(handler, transport)

            server.connection_made = counted  # type: ignore[method-assign]
        site = web.TCPSite(self._runner, cfg.host, cfg.port, ssl_context=ssl_ctx, backlog=1024)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        scheme = "https" if cfg.tls else "http"
        self.base_url = f"{scheme}://{cfg.host}:{self.port}"
        self._api.server_address = f"{cfg.host}:{self.port}"
        self._write_kubeconfig()
        self._janitor = asyncio.ensure_future(self._expire_events())

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.kubelet is not None:
            tasks = []
            for worker in list(self.kubelet.workers.values()):
                worker.removed = True
                for cs in worker.init_cs + worker.cs:
                    if cs.runtime is not None and cs.runtime.done is not None:
                        cs.runtime.cancel()
                        tasks.append(cs.runtime.done)
                worker.task.cancel()
                tasks.append(worker.task)
            for t in [*self.kubelet.bg, *(self._api._bg if self._api is not None else ())]:
                t.cancel()
                tasks.append(t)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        if self.quota is not None:
            self.quota.close()
        if self._owns_workdir and self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._owns_workdir = False

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[SimCluster]:
        """Run the cluster on a daemon thread with its own event loop (for sync callers)."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:  # pragma: no cover - surfaced to the caller below
                errors.append(e)
                started.set()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name="kpo-async-sim", daemon=True)
        thread.start()
        started.wait()
        if errors:
            raise errors[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the cluster's loop (from any thread) and return its result."""
        assert self.loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return fn(*args)

        async def wrapper() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result()

    # --- conveniences for tests (thread-safe) ---
    def evict(self, namespace: str, name: str, message: str | None = None) -> None:
        """The kubelet evicts the pod: containers killed, phase Failed, reason Evicted."""
        assert self.kubelet is not None
        self.call(self.kubelet.evict, namespace, name, message or DEFAULT_EVICTION_MESSAGE)

    def add_fault(self, fault: Fault) -> str:
        return self.faults.add(fault)

    def lose_node(self, node: str | None = None) -> list[str]:
        """The node stops reporting: its pods get DisruptionTarget (taint manager) and stay
        Terminating until `restore_node`. Returns the "ns/name" of the pods marked."""
        assert self.nodes is not None
        return self.call(self.nodes.lose, node or self.config.node_name)  # type: ignore[no-any-return]

    def lose_node_of(self, namespace: str, name: str) -> list[str]:
        """`lose_node` for the node the pod is bound to."""
        return self.lose_node(self.call(self._node_of, namespace, name))

    def restore_node(self, node: str | None = None) -> None:
        """The node is back (or registers again after `delete_node`): pending deletions complete."""
        assert self.nodes is not None
        self.call(self.nodes.restore, node or self.config.node_name)

    def delete_node(self, node: str | None = None) -> list[str]:
        """Delete the Node: pod GC fails (DeletionByPodGC) and force-deletes its pods."""
        assert self.nodes is not None
        return self.call(self.nodes.delete, node or self.config.node_name)  # type: ignore[no-any-return]

    def set_node_allocatable(self, values: dict[str, str], node: str | None = None) -> dict[str, str]:
        """Change the node's allocatable (e.g. {"cpu": "2"}); returns the new allocatable."""
        assert self.nodes is not None
        return self.call(self.nodes.set_allocatable, node or self.config.node_name, values)  # type: ignore[no-any-return]

    def _node_of(self, namespace: str, name: str) -> str:
        assert self.store is not None
        obj = self.store.get("pods", namespace, name)
        if obj is None or obj.body is None:
            raise not_found("pods", name)
        node = obj.body["spec"].get("nodeName")
        if not node:
            raise ApiError(409, f'pod "{name}" is not bound to a node', "Conflict")
        return str(node)

    # --- pieces ---
    def _node(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {
                "name": cfg.node_name,
                "uid": new_uid(),
                "creationTimestamp": fmt_time(),
                "labels": dict(cfg.node_labels),
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"podCIDR": "127.0.0.0/16", "podCIDRs": ["127.0.0.0/16"]},
            "status": {
                "capacity": dict(cfg.node_allocatable),
                "allocatable": dict(cfg.node_allocatable),
                "conditions": [
                    _node_cond(
                        "MemoryPressure",
                        "False",
                        "KubeletHasSufficientMemory",
                        "kubelet has sufficient memory available",
                    ),
                    _node_cond(
                        "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
                    ),
                    _node_cond(
                        "PIDPressure",
                        "False",
                        "KubeletHasSufficientPID",
                        "kubelet has sufficient PID available",
                    ),
                    _node_cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": cfg.node_name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": "kpoasyncsim",
                    "systemUUID": "kpoasyncsim",
                    "bootID": "kpoasyncsim",
                    "kernelVersion": "6.0.0-kpo-async-sim",
                    "osImage": "kpo-async simulator",
                    "containerRuntimeVersion": "containerd://1.7.24",
                    "kubeletVersion": "v1.32.0",
                    "kubeProxyVersion": "v1.32.0",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }

    def _write_kubeconfig(self) -> None:
        cluster: dict[str, Any] = {"server": self.base_url}
        if self._tls is not None:
            import base64

            cluster["certificate-authority-data"] = base64.b64encode(self._tls.ca_pem).decode()
        user: dict[str, Any] = {"token": self.token} if self.config.auth else {}
        self.kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": NAME, "cluster": cluster}],
            "users": [{"name": NAME, "user": user}],
            "contexts": [{"name": NAME, "context": {"cluster": NAME, "user": NAME, "namespace": "default"}}],
            "current-context": NAME,
            "preferences": {},
        }
        path = self.config.kubeconfig_path or os.path.join(self.workdir, "kubeconfig")
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(self.kubeconfig, f, sort_keys=False)
        self.kubeconfig_path = path

    async def _expire_events(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, max(1.0, self.config.event_ttl / 10)))
            if self.events is not None:
                self.events.expire()

    # --- middlewares ---
    @web.middleware
    async def _errors_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return error_response(e)
        except web.HTTPNotFound:
            return json_response(
                status_body(404, "the server could not find the requested resource", "NotFound", {}), 404
            )
        except web.HTTPMethodNotAllowed:
            return json_response(
                status_body(
                    405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
                ),
                405,
            )
        except (ConnectionResetError, asyncio.CancelledError, web.HTTPException):
            raise
        except Exception as e:
            log.exception("kpo-async sim: error serving %s %s", request.method, request.path)
            return json_response(status_body(500, f"Internal error occurred: {e}", "InternalError"), 500)

    @web.middleware
    async def _auth_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.config.auth and request.path not in ANONYMOUS_PATHS:
            scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
            # kube-apiserver matches the scheme case-insensitively (the in-cluster loader sends "bearer")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self.token.encode()
            ):
                return json_response(status_body(401, "Unauthorized", "Unauthorized"), 401)
        return await handler(request)

    @web.middleware
    async def _stats_faults_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/sim/"):
            return await handler(request)
        verb_resource = classify(request.method, request.path, request.query)
        self.stats.count(verb_resource)
        if verb_resource in self.config.denied:
            verb, _, resource = verb_resource.partition(" ")
            return forbidden(verb, resource, *request_target(request.path))
        fault = self.faults.take(request.method, request.path, request.query_string)
        if fault is None:
            return await handler(request)
        request[FAULT_KEY] = fault
        if fault.latency > 0:
            await asyncio.sleep(fault.latency)
        if fault.status is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            from kpo_async.testing.sim.errors import default_message

            return error_response(
                ApiError(
                    fault.status,
                    fault.message or default_message(fault.status),
                    None,
                    {"retryAfterSeconds": int(fault.retry_after)} if fault.retry_after else None,
                    headers,
                )
            )
        resp = await handler(request)
        if fault.latency_after > 0:
            await asyncio.sleep(fault.latency_after)
        if fault.drop_after_bytes is not None and isinstance(resp, web.Response) and not resp.prepared:
            body = resp.body if isinstance(resp.body, bytes) else b""
            partial = web.StreamResponse(status=resp.status, headers={"Content-Type": resp.content_type})
            partial.content_length = len(body)
            await partial.prepare(request)
            await partial.write(body[: fault.drop_after_bytes])
            drop_connection(request)
            return partial  # aiohttp's write_eof fails on the closed transport, quietly
        return resp


DEFAULT_EVICTION_MESSAGE = (
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. "
)


def _node_cond(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    now = fmt_time()
    return {
        "type": type_,
        "status": status,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }
