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
import os
import socket
import ssl
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.rest import RESTClientObject

from kpo_async.connection import ClusterConfig, ClusterRef, load_configuration, resolve_cluster
from kpo_async.errors import KpoAsyncError

#: Concurrent short API requests per cluster (watch streams and exec sessions count here too).
API_POOL_SIZE = 64
#: Concurrently followed log streams per cluster: Airflow's default triggerer capacity.
LOG_STREAMS = 1000
#: asyncio's read buffer per TLS connection, KiB (its own default is 256). With 8, 100 MB of log
#: took 2.4-3.2 s to read here, against 2.4-2.8 s with 16 and 3.3 s with 4; each followed pod
#: costs 8 KiB less than with 16 (docs/scale.md).
TLS_READ_BUFFER_KIB = 8


@dataclass(frozen=True)
class ClientLimits:
    api_connections: int = API_POOL_SIZE
    #: Upper bound of concurrently followed log streams; past it triggers read logs periodically.
    log_streams: int = LOG_STREAMS
    tls_read_buffer_kib: int = TLS_READ_BUFFER_KIB

    @classmethod
    def from_environment(cls) -> ClientLimits:
        """Limits from ``AIRFLOW__KPO_ASYNC__API_CONNECTIONS`` / ``..._MAX_LOG_STREAMS`` /
        ``..._TLS_READ_BUFFER_KIB`` (Airflow's naming for a ``[kpo_async]`` config section), so a
        triggerer can be tuned per deployment."""
        return cls(
            api_connections=int(os.environ.get("AIRFLOW__KPO_ASYNC__API_CONNECTIONS", API_POOL_SIZE)),
            log_streams=int(os.environ.get("AIRFLOW__KPO_ASYNC__MAX_LOG_STREAMS", LOG_STREAMS)),
            tls_read_buffer_kib=int(
                os.environ.get("AIRFLOW__KPO_ASYNC__TLS_READ_BUFFER_KIB", TLS_READ_BUFFER_KIB)
            ),
        )


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
    def __init__(self, configuration: Configuration, rest_client: RESTClientObject) -> None:
        # ApiClient.__init__ would create a RESTClientObject (and an SSL context) synchronously.
        self.configuration = configuration
        self.pool_threads = 1
        self.rest_client = rest_client
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
    ) -> None:
        self.config = config
        self.configuration = configuration
        self.limits = limits
        limit_tls_read_buffer(limits.tls_read_buffer_kib)
        self.api_client = _ApiClient(
            configuration, _RestClient(configuration, ssl_context, limits.api_connections)
        )
        self.core = CoreV1Api(self.api_client)
        # Follow streams hold a connection each for as long as a pod runs: separate pool.
        self.log_api_client = _ApiClient(
            configuration, _RestClient(configuration, ssl_context, limits.log_streams + 8)
        )
        self.log_stream_slots = asyncio.Semaphore(limits.log_streams)
        #: Which cluster this is, without secrets: see `cluster_fingerprint`.
        self.fingerprint: dict[str, str | None] = {"server": self.host, "ca_sha256": None, "connection": None}

    @property
    def session(self) -> aiohttp.ClientSession:
        """The API pool's aiohttp session (used for exec WebSockets)."""
        return self.api_client.rest_client.pool_manager

    @property
    def host(self) -> str:
        return str(self.configuration.host)

    async def auth_headers(self) -> dict[str, str]:
        """Authorization header for requests made outside the generated API (exec)."""
        token = await self.configuration.get_api_key_with_prefix("BearerToken")
        return {"Authorization": token} if token else {}

    @property
    def default_namespace(self) -> str | None:
        return self.config.namespace

    async def close(self) -> None:
        await self.api_client.close()
        await self.log_api_client.close()


async def create_client(ref: ClusterRef, limits: ClientLimits | None = None) -> ClusterClient:
    config = await resolve_cluster(ref)
    configuration, ssl_context = await load_configuration(config)
    client = ClusterClient(config, configuration, ssl_context, limits or ClientLimits.from_environment())
    client.fingerprint = await cluster_fingerprint(config, configuration)
    return client


async def cluster_fingerprint(config: ClusterConfig, configuration: Configuration) -> dict[str, str | None]:
    """The cluster this host reaches, without secrets: the API server's URL, a digest of the CA it
    trusts, and the connection that named it (None when no connection on this host did)."""
    digest = None
    if configuration.ssl_ca_cert:
        with contextlib.suppress(OSError):
            data = await asyncio.to_thread(Path(configuration.ssl_ca_cert).read_bytes)
            digest = hashlib.sha256(data).hexdigest()
    connection = config.ref.conn_id if config.connection_found else None
    return {"server": str(configuration.host), "ca_sha256": digest, "connection": connection}


def check_same_cluster(expected: dict[str, str | None] | None, client: ClusterClient, pod: str) -> None:
    """Refuse to follow `pod` on another cluster than the one the worker created it on."""
    if not expected:  # kwargs stored by an older version
        return
    here = client.fingerprint
    conn = client.config.ref.conn_id
    problem = None
    if expected.get("connection") and not here.get("connection"):
        problem = f"connection {conn!r} does not exist on this host (it did on the worker)"
    elif expected.get("server") != here.get("server"):
        problem = "the API servers differ"
    elif None not in (expected.get("ca_sha256"), here.get("ca_sha256")) and (
        expected.get("ca_sha256") != here.get("ca_sha256")
    ):
        problem = "the API servers' certificate authorities differ"
    if problem:
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


#: Per event loop: the shared clients by cluster key, and the locks their first callers share.
_shared: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[dict[str, ClusterClient], dict[str, asyncio.Lock]]
] = weakref.WeakKeyDictionary()


async def shared_client(ref: ClusterRef) -> ClusterClient:
    """The process-wide client for `ref` on the running loop, created once.

    Concurrent first callers wait on one resolution instead of each resolving the cluster.
    """
    clients, locks = _shared.setdefault(asyncio.get_running_loop(), ({}, {}))
    if ref.key not in clients:
        async with locks.setdefault(ref.key, asyncio.Lock()):
            if ref.key not in clients:
                clients[ref.key] = await create_client(ref)
    return clients[ref.key]


async def close_shared_clients() -> None:
    """Close every shared client of the running loop (tests, benchmark teardown)."""
    clients, _ = _shared.pop(asyncio.get_running_loop(), ({}, {}))
    for client in clients.values():
        await client.close()
