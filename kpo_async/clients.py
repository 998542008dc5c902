"""Shared Kubernetes API clients: one connection pool per cluster per event loop.

In the triggerer every PodTrigger for the same cluster gets the same `ClusterClient`, so a
thousand deferred pods share one resolved configuration, one SSL context and one pool of TCP
connections (plus a separate pool for long-lived log streams, so streams cannot starve the
short API calls). On a worker, `open_client` gives a private client for one `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import hashlib
import socket
import ssl
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.rest import RESTClientObject

from kpo_async.connection import ClusterConfig, ClusterRef, load_configuration, resolve_cluster
from kpo_async.errors import KpoAsyncError
from kpo_async.settings import setting


@dataclass(frozen=True)
class ClientLimits:
    """A process's limits per cluster: ``[kpo_async]`` settings, see docs/settings.md. The TLS
    buffer's default, 8 KiB, read 100 MB of log in 2.4-3.2 s here, against 2.4-2.8 s with 16 and
    3.3 s with 4; each followed pod costs 8 KiB less than with 16 (docs/scale.md)."""

    api_connections: int
    #: Upper bound of concurrently followed log streams; past it triggers read logs periodically.
    log_streams: int
    tls_read_buffer_kib: int

    @classmethod
    def configured(cls) -> ClientLimits:
        return cls(setting("api_connections"), setting("max_log_streams"), setting("tls_read_buffer_kib"))


def limit_tls_read_buffer(kib: int) -> None:
    """Cap the read buffer asyncio allocates, zero-filled, for every TLS connection of this process.

    asyncio's is 256 KiB (``asyncio.sslproto.SSLProtocol.max_size``, a class attribute, so the cap
    is the whole process's). With one connection per followed log it was 240 of the ~280 KiB each
    streamed pod cost a triggerer. TLS records are at most 16 KiB: a smaller buffer only means
    more, smaller reads of bulk data. 0 keeps asyncio's default; the cap never raises it.
    """
    protocol: Any = asyncio.sslproto.SSLProtocol  # max_size is not in the type stubs
    protocol.max_size = min(protocol.max_size, kib * 1024 or protocol.max_size)


class _RestClient(RESTClientObject):
    """kubernetes-asyncio's REST client, built around an SSL context made off the event loop.

    The stock constructor loads CA and client certificates synchronously on the loop.
    """

    def __init__(self, configuration: Configuration, ssl_context: ssl.SSLContext, limit: int) -> None:
        # Deliberately not calling super().__init__: it would build its own SSL context. The
        # attributes it would set are the ones its request() reads (pinned by test_k8s_internals).
        self.server_hostname = configuration.tls_server_name  # type: ignore[assignment]
        self.proxy = configuration.proxy  # type: ignore[assignment]
        self.proxy_headers = configuration.proxy_headers  # type: ignore[assignment]
        connector = aiohttp.TCPConnector(limit=limit, ssl=ssl_context, keepalive_timeout=60)
        self.pool_manager = aiohttp.ClientSession(connector=connector, trust_env=False, read_bufsize=2**21)


class _ApiClient(ApiClient):
    def __init__(self, configuration: Configuration, ssl_context: ssl.SSLContext, limit: int) -> None:
        # ApiClient.__init__ would create a RESTClientObject (and an SSL context) synchronously.
        self.configuration = configuration
        self.pool_threads = 1
        self.rest_client = _RestClient(configuration, ssl_context, limit)
        self.default_headers = {}
        self.cookie = None  # type: ignore[assignment]
        self.user_agent = "kpo-async"
        self.client_side_validation = configuration.client_side_validation


class ClusterClient:
    """Everything needed to talk to one cluster: resolved config, API pool, log-stream pool."""

    def __init__(
        self,
        config: ClusterConfig,
        configuration: Configuration,
        ssl_context: ssl.SSLContext,
        limits: ClientLimits,
        fingerprint: dict[str, str | None],
    ) -> None:
        self.config = config
        self.configuration = configuration
        self.host = str(configuration.host)
        self.limits = limits
        limit_tls_read_buffer(limits.tls_read_buffer_kib)
        self.api_client = _ApiClient(configuration, ssl_context, limits.api_connections)
        self.core = CoreV1Api(self.api_client)
        # Follow streams hold a connection each for as long as a pod runs: separate pool.
        self.log_api_client = _ApiClient(configuration, ssl_context, limits.log_streams + 8)
        self.log_stream_slots = asyncio.Semaphore(limits.log_streams)
        #: Which cluster this is, without secrets: see `create_client`.
        self.fingerprint = fingerprint

    async def ws_connect(self, path: str, **options: Any) -> aiohttp.ClientWebSocketResponse[bool]:
        """A WebSocket to `path` on the API server (exec), on the API pool, with this client's
        credentials (aiohttp upgrades the http(s) URL itself)."""
        token = await self.configuration.get_api_key_with_prefix("BearerToken")
        headers = {"Authorization": token} if token else {}
        session: aiohttp.ClientSession = self.api_client.rest_client.pool_manager
        return await session.ws_connect(f"{self.host}{path}", headers=headers, **options)

    async def close(self) -> None:
        await self.api_client.close()
        await self.log_api_client.close()


async def create_client(ref: ClusterRef) -> ClusterClient:
    config = await resolve_cluster(ref)
    configuration, ssl_context = await load_configuration(config)
    limits = await asyncio.to_thread(ClientLimits.configured)  # Airflow's configuration lookups: off the loop
    # Which cluster this host reaches, without secrets: the API server's URL, a digest of the CA it
    # trusts, and the connection that named it (None when no connection on this host did).
    ca_sha256 = None
    if configuration.ssl_ca_cert:
        with contextlib.suppress(OSError):
            data = await asyncio.to_thread(Path(configuration.ssl_ca_cert).read_bytes)
            ca_sha256 = hashlib.sha256(data).hexdigest()
    fingerprint = {"server": str(configuration.host), "ca_sha256": ca_sha256, "connection": config.connection}
    return ClusterClient(config, configuration, ssl_context, limits, fingerprint)


def check_same_cluster(expected: dict[str, str | None] | None, client: ClusterClient, pod: str) -> None:
    """Refuse to follow `pod` on another cluster than the one the worker created it on."""
    if not expected:  # kwargs stored by an older version
        return
    here, conn = client.fingerprint, client.config.ref.conn_id
    if expected.get("connection") and not here.get("connection"):
        problem = f"connection {conn!r} does not exist on this host (it did on the worker)"
    elif expected.get("server") != here.get("server"):
        problem = "the API servers differ"
    elif here.get("ca_sha256") and expected.get("ca_sha256") not in (None, here.get("ca_sha256")):
        problem = "the API servers' certificate authorities differ"
    else:
        return
    raise KpoAsyncError(
        f"refusing to follow pod {pod}: the worker created it on {expected.get('server')} "
        f"(connection {conn!r}), but here, on {socket.gethostname()!r}, that reference reaches "
        f"{here.get('server')} ({client.config.source}): {problem}. Fix: give connection "
        f"{conn!r} the same cluster on every worker and triggerer; no fallback to this host's "
        "kubeconfig or in-cluster credentials is made"
    )


@contextlib.asynccontextmanager
async def open_client(ref: ClusterRef) -> AsyncIterator[ClusterClient]:
    """A private client closed on exit: for a worker's short `asyncio.run`."""
    client = await create_client(ref)
    try:
        yield client
    finally:
        await client.close()


#: Per event loop: the shared clients by cluster key, the locks their first callers share, and
#: the async generator that closes the clients when the loop ends.
_shared: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop,
    tuple[dict[ClusterRef, ClusterClient], dict[ClusterRef, asyncio.Lock], AsyncGenerator[None, None]],
] = weakref.WeakKeyDictionary()


async def shared_client(ref: ClusterRef) -> ClusterClient:
    """The process-wide client for `ref` on the running loop, created once.

    Concurrent first callers wait on one resolution instead of each resolving the cluster.
    """
    loop = asyncio.get_running_loop()
    if loop not in _shared:
        clients: dict[ClusterRef, ClusterClient] = {}
        _shared[loop] = (clients, {}, _closed_with_the_loop(clients))
        await anext(_shared[loop][2])
    clients, locks, _ = _shared[loop]
    if ref not in clients:
        async with locks.setdefault(ref, asyncio.Lock()):
            if ref not in clients:
                clients[ref] = await create_client(ref)
    return clients[ref]


async def _closed_with_the_loop(clients: dict[ClusterRef, ClusterClient]) -> AsyncGenerator[None, None]:
    """Waits, suspended, for its loop's end; then closes the loop's shared clients, on that loop.

    Whoever ends a loop closes its async generators before the loop itself: `asyncio.run` does,
    for the triggerer, a worker and `airflow dags test`'s inline trigger. So no session is left
    for the garbage collector to report as unclosed, and nothing polls or waits meanwhile.
    """
    try:
        yield
    finally:
        for client in list(clients.values()):
            await client.close()


async def close_shared_clients() -> None:
    """Close every shared client of the running loop now (tests, benchmark teardown)."""
    entry = _shared.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        await entry[2].aclose()
