"""The kubernetes-asyncio internals kpo-async relies on. If one of these fails after an upgrade,
kpo_async/clients.py or kpo_async/connection.py must follow before the version bound in
pyproject.toml is raised.

- `clients._RestClient` / `clients._ApiClient` skip their parents' ``__init__`` (which would build
  an SSL context on the event loop) and set the parents' attributes themselves;
- `connection.load_configuration` drives the exec plugin through ``exec_plugin_expiry`` (set for a
  token that expires) / ``load_from_exec_plugin`` (which skips the plugin until 5 minutes before
  that expiry) / ``token``; `connection._loader` lets
  the ``KubeConfigLoader`` constructor check the context (``ConfigException``) and reads its
  ``current_context`` (covered by tests/unit/test_connection.py);
- `Configuration.refresh_api_key_hook` and ``get_api_key_with_prefix`` carry the refreshed token;
- and one asyncio internal: `clients.limit_tls_read_buffer` caps
  ``asyncio.sslproto.SSLProtocol.max_size``, the size of the buffer each TLS connection allocates.
"""

from __future__ import annotations

import ast
import asyncio
import asyncio.sslproto
import inspect
import ssl
import textwrap

from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.rest import RESTClientObject
from kubernetes_asyncio.config.kube_config import KubeConfigLoader

from kpo_async.clients import _ApiClient, limit_tls_read_buffer


def attributes_set_in(function: object) -> set[str]:
    """The ``self.<name> = ...`` targets of a method (its source, parsed), properties aside."""
    owner = vars(inspect.getmodule(function))[function.__qualname__.split(".")[0]]  # type: ignore[attr-defined]
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and not isinstance(getattr(owner, node.attr, None), property)
    }


async def test_our_clients_set_every_attribute_the_parents_constructors_set() -> None:
    configuration = Configuration(host="https://127.0.0.1:1")
    api = _ApiClient(configuration, ssl.create_default_context(), limit=1)
    rest = api.rest_client
    try:
        # ApiClient sets _pool lazily (its `pool` property); every other attribute must be ours.
        missing_api = attributes_set_in(ApiClient.__init__) - {"_pool"} - set(vars(api))
        missing_rest = attributes_set_in(RESTClientObject.__init__) - set(vars(rest))
        assert not missing_api, f"ApiClient.__init__ now sets {missing_api}: set them in _ApiClient"
        assert not missing_rest, f"RESTClientObject.__init__ now sets {missing_rest}: set them in _RestClient"
        assert inspect.signature(RESTClientObject.request).parameters.keys() >= {
            "method",
            "url",
            "headers",
            "body",
            "_preload_content",
            "_request_timeout",
        }
    finally:
        await api.close()


def test_the_kubeconfig_loader_keeps_what_we_read() -> None:
    kubeconfig = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"exec": {"command": "true", "apiVersion": "v1"}}}],
    }
    loader = KubeConfigLoader(config_dict=kubeconfig)
    assert not hasattr(loader, "exec_plugin_expiry")  # until a plugin's token that expires is loaded
    assert "exec_plugin_expiry" in inspect.get_annotations(KubeConfigLoader.__init__) or hasattr(
        KubeConfigLoader, "load_from_exec_plugin"
    )
    assert inspect.iscoroutinefunction(KubeConfigLoader.load_from_exec_plugin)
    assert "exec_plugin_expiry" in inspect.getsource(KubeConfigLoader.load_from_exec_plugin)
    assert "_is_expired(" in inspect.getsource(KubeConfigLoader.load_from_exec_plugin)
    assert "self.token" in inspect.getsource(KubeConfigLoader.load_from_exec_plugin)


def test_configuration_runs_the_refresh_hook_for_the_bearer_token() -> None:
    assert "refresh_api_key_hook" in vars(Configuration())
    assert inspect.iscoroutinefunction(Configuration.get_api_key_with_prefix)
    assert "refresh_api_key_hook" in inspect.getsource(Configuration.get_api_key_with_prefix)


def test_a_tls_connection_s_read_buffer_follows_the_cap() -> None:
    protocol_class = asyncio.sslproto.SSLProtocol
    before = protocol_class.max_size
    loop = asyncio.new_event_loop()
    try:
        protocol_class.max_size = 256 * 1024  # asyncio's own (a client made earlier lowered it)
        limit_tls_read_buffer(0)  # 0: asyncio's own
        assert protocol_class.max_size == 256 * 1024
        limit_tls_read_buffer(512)  # never raised
        assert protocol_class.max_size == 256 * 1024
        limit_tls_read_buffer(16)
        assert protocol_class.max_size == 16 * 1024
        context = ssl.create_default_context()
        connection = protocol_class(loop, asyncio.Protocol(), context, None)
        assert len(connection._ssl_buffer) == 16 * 1024  # what each connection allocates
    finally:
        protocol_class.max_size = before
        loop.close()
