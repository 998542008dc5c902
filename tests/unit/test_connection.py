"""Resolving where the cluster is: precedence and clear errors (real files, real Airflow connections)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kpo_async.connection import ClusterRef, load_configuration, resolve_cluster
from kpo_async.errors import InvalidArgumentError


def kubeconfig(server: str = "https://127.0.0.1:6443", contexts: tuple[str, ...] = ("a", "b")) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "planted-secret-token-123"}}],
        "contexts": [
            {"name": name, "context": {"cluster": "c", "user": "u", "namespace": f"ns-{name}"}}
            for name in contexts
        ],
        "current-context": contexts[0],
    }


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig()))
    return path


async def test_config_file_and_context(config_path: Path) -> None:
    config = await resolve_cluster(ClusterRef(config_file=str(config_path), cluster_context="b"))
    assert config.context == "b"
    assert config.namespace == "ns-b"
    configuration, _ = await load_configuration(config)
    assert configuration.host == "https://127.0.0.1:6443"
    assert configuration.api_key["BearerToken"] == "Bearer planted-secret-token-123"


async def test_repr_never_shows_credentials(config_path: Path) -> None:
    config = await resolve_cluster(ClusterRef(config_file=str(config_path)))
    assert "planted-secret" not in repr(config)
    assert "planted-secret" not in json.dumps(ClusterRef(config_file=str(config_path)).to_dict())


async def test_missing_kubeconfig_names_argument_host_and_fix(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await resolve_cluster(ClusterRef(config_file=str(tmp_path / "absent")))
    assert info.value.argument == "config_file"
    assert "does not exist on host" in str(info.value)
    assert "kube_config" in info.value.fix


async def test_unknown_context_lists_the_known_ones(config_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await resolve_cluster(ClusterRef(config_file=str(config_path), cluster_context="prod"))
    assert info.value.argument == "cluster_context"
    assert "'prod'" in str(info.value) and "['a', 'b']" in str(info.value)


async def test_invalid_yaml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "broken"
    path.write_text("clusters: [\n")
    with pytest.raises(InvalidArgumentError, match="not valid YAML"):
        await resolve_cluster(ClusterRef(config_file=str(path)))


async def test_connection_with_inline_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"kube_config": json.dumps(kubeconfig(contexts=("x",))), "namespace": "from-conn"}
    monkeypatch.setenv("AIRFLOW_CONN_K8S_INLINE", json.dumps({"conn_type": "kubernetes", "extra": extra}))
    config = await resolve_cluster(ClusterRef(conn_id="k8s_inline"))
    assert config.context == "x"
    assert config.namespace == "from-conn"


async def test_legacy_prefixed_extras_and_task_override(
    monkeypatch: pytest.MonkeyPatch, config_path: Path
) -> None:
    extra = {
        "extra__kubernetes__kube_config_path": "/does/not/matter",
        "extra__kubernetes__cluster_context": "a",
    }
    monkeypatch.setenv("AIRFLOW_CONN_K8S_OLD", json.dumps({"conn_type": "kubernetes", "extra": extra}))
    # The task's config_file and cluster_context win over the connection's.
    config = await resolve_cluster(
        ClusterRef(conn_id="k8s_old", config_file=str(config_path), cluster_context="b")
    )
    assert config.context == "b"


async def test_unknown_connection_id(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await resolve_cluster(ClusterRef(conn_id="no_such_conn"))
    assert info.value.argument == "kubernetes_conn_id"
    assert "'no_such_conn' was not found" in str(info.value)


async def test_conflicting_sources_are_rejected(monkeypatch: pytest.MonkeyPatch, config_path: Path) -> None:
    extra = {"in_cluster": True}
    monkeypatch.setenv("AIRFLOW_CONN_K8S_IN", json.dumps({"conn_type": "kubernetes", "extra": extra}))
    with pytest.raises(InvalidArgumentError) as info:
        await resolve_cluster(ClusterRef(conn_id="k8s_in", config_file=str(config_path)))
    assert "connection 'k8s_in' extra in_cluster" in str(info.value)
    assert f"task argument config_file={str(config_path)!r}" in str(info.value)


async def test_a_conflict_names_where_each_value_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """in_cluster=True on the task, kube_config_path in the connection: no config_file was passed."""
    extra = {"kube_config_path": "/etc/kube/config"}
    monkeypatch.setenv("AIRFLOW_CONN_K8S_PATH", json.dumps({"conn_type": "kubernetes", "extra": extra}))
    with pytest.raises(InvalidArgumentError) as info:
        await resolve_cluster(ClusterRef(conn_id="k8s_path", in_cluster=True))
    message = str(info.value)
    assert "task argument in_cluster=True" in message
    assert "connection 'k8s_path' extra kube_config_path='/etc/kube/config'" in message
    assert "config_file" not in message.split("Fix")[0].replace("kube_config_path", "")


async def test_default_connection_id_may_be_absent(
    monkeypatch: pytest.MonkeyPatch, config_path: Path
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(config_path))
    config = await resolve_cluster(ClusterRef(conn_id="kubernetes_default"))
    assert config.source == str(config_path)


async def test_in_cluster_outside_a_pod_names_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's in-cluster loader checks the service env vars and token; we name the argument."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = await resolve_cluster(ClusterRef(in_cluster=True))
    with pytest.raises(InvalidArgumentError) as info:
        await load_configuration(config)
    assert info.value.argument == "in_cluster"
    assert "not running in a Kubernetes pod (Service host/port is not set.)" in str(info.value)


async def test_an_incomplete_kubeconfig_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "no-clusters"
    path.write_text(yaml.safe_dump({**kubeconfig(), "clusters": []}))
    with pytest.raises(InvalidArgumentError) as info:
        await resolve_cluster(ClusterRef(config_file=str(path)))
    assert info.value.argument == "config_file"
    assert "is incomplete" in str(info.value) and "clusters" in str(info.value)
