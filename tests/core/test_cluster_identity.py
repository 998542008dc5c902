"""The trigger follows the pod on the cluster the worker created it on, or refuses, naming both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kpo_async.errors import PodFailedError
from kpo_async.testing.harness import (
    FakeTI,
    context_for,
    make_operator,
    run_trigger,
    stored_kwargs,
    submit,
    trigger_from,
)
from kpo_async.testing.sim import SimCluster, SimConfig

CONN = "AIRFLOW_CONN_KUBERNETES_DEFAULT"


def connection_to(cluster: SimCluster) -> str:
    return json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(cluster.kubeconfig_path)}}
    )


def server(cluster: SimCluster) -> str:
    return yaml.safe_load(Path(cluster.kubeconfig_path).read_text())["clusters"][0]["cluster"]["server"]


def deferred_on(sim: SimCluster, name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[object, FakeTI, tuple]:
    monkeypatch.setenv(CONN, connection_to(sim))
    op = make_operator(
        sim, name=name, kubernetes_conn_id="kubernetes_default", config_file=None, cmds=["true"]
    )
    ti = FakeTI(name)
    return op, ti, stored_kwargs(submit(op, ti))


def test_the_worker_s_cluster_travels_with_the_trigger_without_secrets(sim_thread, monkeypatch) -> None:
    op, ti, (classpath, kwargs) = deferred_on(sim_thread, "same-cluster", monkeypatch)
    fingerprint = kwargs["cluster_fingerprint"]
    assert fingerprint["server"] == server(sim_thread) and fingerprint["connection"] == "kubernetes_default"
    assert sim_thread.token not in json.dumps(kwargs)
    event = run_trigger(trigger_from(classpath, kwargs))
    assert event["status"] == "success"
    op.execute_complete(context_for(ti), event)


def test_a_pod_on_another_cluster_is_refused_naming_connection_and_hosts(sim_thread, monkeypatch) -> None:
    op, ti, (classpath, kwargs) = deferred_on(sim_thread, "other-cluster", monkeypatch)
    with SimCluster(SimConfig()).in_thread() as other:
        monkeypatch.setenv(CONN, connection_to(other))  # the triggerer's connection differs
        event = run_trigger(trigger_from(classpath, kwargs))
        assert event["status"] == "error"
        message = event["message"]
        assert "refusing to follow pod" in message and "'kubernetes_default'" in message
        assert server(sim_thread) in message and server(other) in message
    monkeypatch.setenv(CONN, connection_to(sim_thread))
    with pytest.raises(PodFailedError):
        op.execute_complete(context_for(ti), event)  # the worker cleans up on its own cluster


def test_a_missing_default_connection_on_the_triggerer_is_no_silent_fallback(sim_thread, monkeypatch) -> None:
    op, ti, (classpath, kwargs) = deferred_on(sim_thread, "no-conn", monkeypatch)
    monkeypatch.delenv(CONN)
    monkeypatch.setenv("KUBECONFIG", str(sim_thread.kubeconfig_path))  # the host's own kubeconfig
    event = run_trigger(trigger_from(classpath, kwargs))
    assert event["status"] == "error"
    assert "connection 'kubernetes_default' does not exist on this host" in event["message"]
    monkeypatch.setenv(CONN, connection_to(sim_thread))
    with pytest.raises(PodFailedError):
        op.execute_complete(context_for(ti), event)


def test_kwargs_stored_without_a_fingerprint_still_resume(sim_thread, monkeypatch) -> None:
    op, ti, (classpath, kwargs) = deferred_on(sim_thread, "old-kwargs", monkeypatch)
    del kwargs["cluster_fingerprint"]  # as stored by an older version
    event = run_trigger(trigger_from(classpath, kwargs))
    assert event["status"] == "success"
    op.execute_complete(context_for(ti), event)
