"""Where the cluster is, and how to reach it.

A `ClusterRef` is the small, secret-free value that travels from the operator into the trigger's
serialized kwargs (and so into the metadata DB). Each process (worker or triggerer) resolves it
itself with `resolve_cluster`, reading the Airflow connection and kubeconfig file *locally*, so
credentials never cross into the DB. Everything here that touches files, subprocesses (exec
credential plugins) or the Airflow connection store is awaited without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.config.incluster_config import SERVICE_HOST_ENV_NAME, load_incluster_config
from kubernetes_asyncio.config.kube_config import KubeConfigLoader

from kpo_async.errors import InvalidArgumentError
from kpo_async.settings import PROVIDER_INFO

DEFAULT_CONN_ID = "kubernetes_default"
#: Connection extras the official `kubernetes` connection type defines; we read the same ones, and
#: our connection form (provider.yaml) has them as its fields.
CONNECTION_EXTRAS = tuple(PROVIDER_INFO["connection-types"][0]["conn-fields"])


@dataclass(frozen=True)
class ClusterRef:
    """Identifies a cluster without carrying credentials: safe to serialize and to log. Frozen, so
    that it keys the client (and the watches) a process shares per cluster."""

    conn_id: str | None = None
    config_file: str | None = None
    cluster_context: str | None = None
    in_cluster: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterRef:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


@dataclass
class ClusterConfig:
    """A resolved cluster: holds credentials, so it is never serialized and they stay out of its repr."""

    ref: ClusterRef
    kubeconfig: dict[str, Any] | None = field(repr=False)
    context: str | None
    in_cluster: bool
    namespace: str | None = None
    verify_ssl: bool = True
    source: str = ""
    extras: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The id of the connection that named the cluster on this host (None: none did).
    connection: str | None = None


async def resolve_cluster(ref: ClusterRef) -> ClusterConfig:
    """Find the kubeconfig (or in-cluster credentials) for `ref` on this host.

    Precedence, as in the official provider: task arguments (config_file, cluster_context,
    in_cluster) override the connection's extras; with neither, the host's default kubeconfig
    (``$KUBECONFIG`` or ``~/.kube/config``) and then in-cluster credentials are tried.
    """
    extras, found_conn = await _connection_extras(ref.conn_id)
    # A task argument wins (in_cluster=False too); the connection's extras are never None or "".
    in_cluster = ref.in_cluster if ref.in_cluster is not None else _as_bool(extras.get("in_cluster"))
    context = ref.cluster_context or extras.get("cluster_context")
    config_path = ref.config_file or extras.get("kube_config_path")
    inline = extras.get("kube_config")
    namespace = extras.get("namespace")
    verify_ssl = not _as_bool(extras.get("disable_verify_ssl"))

    # Where each value came from: a task argument or the connection.
    conn = f"connection {ref.conn_id!r} extra"
    path_from = "task argument config_file" if ref.config_file else f"{conn} kube_config_path"
    flag_from = "task argument" if ref.in_cluster is not None else conn
    given = {f"{flag_from} in_cluster={in_cluster}": in_cluster, f"{path_from}={config_path!r}": config_path}
    chosen = [where for where, value in {**given, f"{conn} kube_config": inline}.items() if value]
    if len(chosen) > 1:
        raise InvalidArgumentError(
            "kubernetes_conn_id",
            f"more than one cluster configuration is set: {'; '.join(chosen)}",
            "use exactly one of in_cluster, config_file / the connection's kube_config_path, "
            "or the connection's inline kube_config",
        )
    kubeconfig, source = (None, "") if in_cluster else await _find_kubeconfig(ref, config_path, inline)
    if kubeconfig is None:  # in-cluster: asked for, or no kubeconfig here but a cluster's env vars
        if not in_cluster and not os.environ.get(SERVICE_HOST_ENV_NAME):
            raise InvalidArgumentError(
                "kubernetes_conn_id",
                f"no Kubernetes configuration found on host {socket.gethostname()!r} "
                "(no connection, no config_file, no ~/.kube/config, not in a cluster)",
                "pass kubernetes_conn_id (a connection of type kubernetes), config_file, or in_cluster=True",
            )
        return ClusterConfig(ref, None, None, True, namespace, verify_ssl, "in-cluster", extras, found_conn)
    current = _loader(kubeconfig, context, source).current_context or {}
    namespace = namespace or current["context"].get("namespace")
    return ClusterConfig(
        ref, kubeconfig, current["name"], False, namespace, verify_ssl, source, extras, found_conn
    )


async def _find_kubeconfig(
    ref: ClusterRef, path: str | None, inline: Any
) -> tuple[dict[str, Any] | None, str]:
    """The kubeconfig the connection or task names, else the host's default one (None if absent); and
    where it came from."""
    if inline:
        source = f"connection {ref.conn_id!r}"
        return _parse_kubeconfig(inline, source=f"{source} extra kube_config"), source
    default = (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep)[0]
    found = await asyncio.to_thread(os.path.expanduser, str(path or default))  # may read the user database
    try:
        text = await asyncio.to_thread(Path(found).read_text, encoding="utf-8")
    except FileNotFoundError:
        if not path:
            return None, found
        problem = "does not exist"
        fix = (
            "make the file available at that path on every worker and triggerer host, or put the "
            "kubeconfig inline in a kubernetes connection (extra kube_config) and pass kubernetes_conn_id"
        )
    except OSError as exc:
        problem, fix = f"cannot be read ({exc.strerror})", "make it a file readable by the Airflow user"
    else:
        return _parse_kubeconfig(text, source=found), found
    where = "" if ref.config_file or not path else f" (connection {ref.conn_id!r} extra kube_config_path)"
    problem = f"kubeconfig {found!r}{where} {problem} on host {socket.gethostname()!r}"
    raise InvalidArgumentError("kubernetes_conn_id" if where else "config_file", problem, fix)


async def load_configuration(config: ClusterConfig) -> tuple[Configuration, ssl.SSLContext]:
    """Build a kubernetes-asyncio `Configuration` and its SSL context off the event loop.

    The loader reads CA/certificate files and may run an exec credential plugin; both happen in a
    worker thread. Tokens from exec plugins (for example ``aws eks get-token``) are refreshed later
    by an async hook that runs the plugin as an asyncio subprocess, so the loop never blocks.
    """
    configuration = Configuration()
    if config.in_cluster:
        try:
            await asyncio.to_thread(load_incluster_config, configuration)
        except ConfigException as exc:
            raise InvalidArgumentError(
                "in_cluster",
                f"in_cluster=True but this process is not running in a Kubernetes pod ({exc})",
                "run the worker and triggerer in the cluster, or pass kubernetes_conn_id / config_file",
            ) from None
    else:
        loader = _loader(config.kubeconfig or {}, config.context, config.source)
        await asyncio.to_thread(asyncio.run, loader.load_and_set(configuration))
        # An exec plugin's token that expires; one that does not is kept for the life of the client
        # (as kubectl does): the loader would otherwise run the plugin before every request.
        if hasattr(loader, "exec_plugin_expiry"):
            configuration.refresh_api_key_hook = _exec_token_refresher(loader)
    # The kubeconfig (insecure-skip-tls-verify) or the connection (disable_verify_ssl) may turn it off.
    configuration.verify_ssl = configuration.verify_ssl and config.verify_ssl
    return configuration, await asyncio.to_thread(_ssl_context, configuration)


def _ssl_context(configuration: Configuration) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _exec_token_refresher(loader: KubeConfigLoader) -> Callable[[Configuration], Awaitable[None]]:
    """An async `refresh_api_key_hook`: the loader runs the exec plugin again (as an asyncio
    subprocess, so a slow ``aws eks get-token`` never blocks the loop) once its token is within 5
    minutes of ``expirationTimestamp``."""
    lock = asyncio.Lock()

    async def refresh(configuration: Configuration) -> None:
        async with lock:  # concurrent requests wait for one run of the plugin
            await loader.load_from_exec_plugin()
        configuration.api_key["BearerToken"] = loader.token

    return refresh


async def _connection_extras(conn_id: str | None) -> tuple[dict[str, Any], str | None]:
    """The connection's extras, and its id (None when none is named, or when the default connection id
    names no connection here: then there are no extras)."""
    if not conn_id:
        return {}, None
    from kpo_async.airflow_compat import AirflowNotFoundException, aget_connection_extras

    try:
        raw = await aget_connection_extras(conn_id)
    except AirflowNotFoundException:
        if conn_id == DEFAULT_CONN_ID:  # the official operator's default id; absent means "use defaults"
            return {}, None
        raise InvalidArgumentError(
            "kubernetes_conn_id",
            f"connection {conn_id!r} was not found on host {socket.gethostname()!r}",
            "create a connection of type kubernetes with that id (on every worker and triggerer), "
            "or remove kubernetes_conn_id to use config_file / the default kubeconfig",
        ) from None
    # Old connections store extras as extra__kubernetes__<name>; both forms keep working.
    extras = {name: raw.get(name, raw.get(f"extra__kubernetes__{name}")) for name in CONNECTION_EXTRAS}
    return {name: value for name, value in extras.items() if value not in (None, "")}, conn_id


def _parse_kubeconfig(value: Any, *, source: str) -> dict[str, Any]:
    try:  # YAML is a superset of JSON: both forms parse
        config = dict(value) if isinstance(value, Mapping) else yaml.safe_load(value)
    except yaml.YAMLError as exc:
        config = exc
    if not isinstance(config, dict):
        raise InvalidArgumentError(
            "config_file",
            f"kubeconfig from {source} is not valid YAML/JSON of a kubeconfig ({type(config).__name__})",
            "fix the kubeconfig syntax (check it with `kubectl config view --kubeconfig FILE`)",
        )
    return config


def _loader(kubeconfig: dict[str, Any], context: str | None, source: str) -> KubeConfigLoader:
    """The client's loader on this kubeconfig and context: it checks both (and does no I/O yet)."""
    # Relative certificate paths in a kubeconfig file are relative to the file itself.
    base_path = os.path.dirname(os.path.abspath(source)) if os.path.sep in source else ""
    try:
        return KubeConfigLoader(kubeconfig, active_context=context, config_base_path=base_path)
    except ConfigException as exc:
        names = [entry.get("name") for entry in kubeconfig.get("contexts") or [] if isinstance(entry, dict)]
        context = context or kubeconfig.get("current-context")
        if context in names:
            raise InvalidArgumentError(
                "config_file",
                f"kubeconfig from {source} is incomplete ({exc})",
                "point at a complete kubeconfig (kind: Config with clusters, users and contexts)",
            ) from None
        problem = f"context {context!r} is not in" if context else "there is no current-context in"
        raise InvalidArgumentError(
            "cluster_context", f"{problem} kubeconfig {source}", f"pass cluster_context, one of {names}"
        ) from None


def _as_bool(value: Any) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
