"""PodTrigger on its own: serialization, and credentials from an exec plugin without blocking."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from kpo_async.clients import close_shared_clients, shared_client
from kpo_async.connection import ClusterRef
from kpo_async.identity import MANAGED_LABEL
from kpo_async.testing.harness import BEHAVIOR, create_pods, first_event, pod_body
from kpo_async.trigger_settings import MonitorSettings
from kpo_async.watch import stop_shared_watchers
from triggers.pod import PodTrigger


def test_serialize_round_trip_keeps_every_argument() -> None:
    original = PodTrigger(
        pod_name="p-1",
        namespace="ns",
        cluster=ClusterRef(conn_id="k8s", cluster_context="ctx").to_dict(),
        base_container_name="main",
        get_logs=False,
        do_xcom_push=True,
        startup_deadline=1795740000.5,
        execution_deadline=1795743600.0,
        log_cursor="2026-11-27T01:02:03.000000001Z/2",
        on_kill_action="keep_pod",
        fallback_poll_seconds=45.0,
        log_poll_seconds=7.0,
        log_checkpoint_seconds=30.0,
        log_events_on_startup=False,
        schedule_deadline=1795740030.0,
        startup_timeout_seconds=90.0,
        secret_env_names=["API_KEY"],
        callbacks=["callbacks.Mine"],
        container_logs=["base", "sidecar"],
        init_container_logs=True,
        container_name_log_prefix_enabled=False,
        log_formatter="formatters:short",
        cluster_fingerprint={"server": "https://k8s:6443"},
    )
    # Every setting differs from its default, so that one not passed through would show.
    assert all(getattr(original.settings, f.name) != f.default for f in fields(MonitorSettings))
    classpath, kwargs = original.serialize()
    assert classpath == "triggers.pod.PodTrigger"
    stored = json.loads(json.dumps(kwargs))  # what the metadata DB keeps
    recreated = PodTrigger(**stored)
    assert recreated.serialize() == (classpath, kwargs)
    assert recreated.settings == original.settings
    assert recreated.cluster_fingerprint == original.cluster_fingerprint


def test_every_setting_is_a_typed_trigger_parameter_with_the_same_default() -> None:
    parameters = inspect.signature(PodTrigger).parameters
    for field in fields(MonitorSettings):
        assert field.name in parameters, f"PodTrigger has no parameter {field.name}"
        assert parameters[field.name].default == field.default, field.name


async def test_a_row_stored_by_the_previous_version_resumes_and_runs(sim) -> None:
    """The kwargs `PodTrigger.serialize()` wrote before the settings became explicit parameters
    (with callbacks, as a task with callbacks stored them), as the metadata DB keeps them, plus one
    kwarg only a newer version knows: the trigger is re-created and follows its pod to the end."""
    cluster = ClusterRef(config_file=sim.kubeconfig_path).to_dict()
    stored = json.loads(
        """{"pod_name": "stored-row", "namespace": "default", "log_cursor": null,
        "on_kill_action": "delete_pod", "cluster_fingerprint": null, "base_container_name": "base",
        "get_logs": true, "do_xcom_push": false, "startup_deadline": 0, "execution_deadline": null,
        "fallback_poll_seconds": 30.0, "log_poll_seconds": 10.0, "log_checkpoint_seconds": 300.0,
        "log_events_on_startup": true, "secret_env_names": [], "callbacks": ["no.such.Callback"],
        "container_logs": null, "init_container_logs": null, "container_name_log_prefix_enabled": true,
        "log_formatter": null, "schedule_deadline": null, "startup_timeout_seconds": null,
        "setting_of_a_newer_version": 1}"""
    )
    stored.update(cluster=cluster, startup_deadline=time.time() + 30)
    pod: dict[str, Any] = {
        "metadata": {
            "name": "stored-row",
            "labels": {MANAGED_LABEL: "true"},
            "annotations": {BEHAVIOR: json.dumps({"duration_seconds": 1, "log_lines_per_second": 4})},
        },
        "spec": {"restartPolicy": "Never", "containers": [{"name": "base", "image": "alpine:3.20"}]},
    }
    try:
        client = await shared_client(ClusterRef(config_file=sim.kubeconfig_path))
        await client.core.create_namespaced_pod("default", pod)
        trigger = PodTrigger(**stored)
        assert trigger.settings.callbacks == ("no.such.Callback",)
        del stored["setting_of_a_newer_version"]
        assert trigger.serialize()[1] == stored  # the same row again, the unknown kwarg dropped
        event = await first_event(trigger)
        assert (event["status"], event["exit_code"]) == ("success", 0)
    finally:
        await stop_shared_watchers()
        await close_shared_clients()


PLUGIN = """
import json, pathlib, sys, time, datetime
calls = pathlib.Path(sys.argv[1])
calls.write_text(str(int(calls.read_text()) + 1) if calls.exists() else "1")
time.sleep(0.4)  # a slow credential helper, like `aws eks get-token`
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=float(sys.argv[3]))
status = {"token": sys.argv[2], "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
kind = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}
print(json.dumps({**kind, "status": status}))
"""


def exec_kubeconfig(sim, tmp_path: Path, lifetime: float) -> tuple[Path, Path]:
    config = yaml.safe_load(Path(sim.kubeconfig_path).read_text())
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    calls = tmp_path / "calls"
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin), str(calls), sim.token, str(lifetime)],
            "interactiveMode": "Never",
        }
    }
    path = tmp_path / "exec-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path, calls


async def test_exec_credential_plugin_runs_without_blocking_the_loop(sim, tmp_path: Path) -> None:
    # The token lives 302 s and is refreshed 5 minutes before expiry, so it is refreshed during the run.
    kubeconfig, calls = exec_kubeconfig(sim, tmp_path, lifetime=302)
    lags: list[float] = []

    async def probe() -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.02)
            lags.append(time.monotonic() - started - 0.02)

    prober = asyncio.create_task(probe())
    ref = ClusterRef(config_file=str(kubeconfig))
    try:
        await create_pods(kubeconfig, [pod_body("exec-auth", duration_seconds=3, log_lines_per_second=4)])
        trigger = PodTrigger(
            pod_name="exec-auth",
            namespace="default",
            cluster=ref.to_dict(),
            startup_deadline=time.time() + 30,
        )
        event = await anext(trigger.run())
        assert event.payload["status"] == "success"
    finally:
        prober.cancel()
        await stop_shared_watchers()
        await close_shared_clients()
    runs = int(calls.read_text())
    assert 2 <= runs <= 4, runs  # refreshed before expiry, but not once per request
    assert max(lags) < 0.2, f"event loop blocked for {max(lags):.3f}s"


def test_client_limits_come_from_the_environment(monkeypatch) -> None:
    from kpo_async.clients import ClientLimits

    monkeypatch.setenv("AIRFLOW__KPO_ASYNC__MAX_LOG_STREAMS", "7")
    monkeypatch.setenv("AIRFLOW__KPO_ASYNC__API_CONNECTIONS", "9")
    monkeypatch.setenv("AIRFLOW__KPO_ASYNC__TLS_READ_BUFFER_KIB", "0")
    assert ClientLimits.configured() == ClientLimits(api_connections=9, log_streams=7, tls_read_buffer_kib=0)
    for name in ("MAX_LOG_STREAMS", "API_CONNECTIONS", "TLS_READ_BUFFER_KIB"):
        monkeypatch.delenv(f"AIRFLOW__KPO_ASYNC__{name}")
    assert ClientLimits.configured() == ClientLimits(
        api_connections=64, log_streams=1000, tls_read_buffer_kib=8
    )


async def test_past_the_stream_limit_logs_are_read_periodically_and_completely(
    sim, monkeypatch, caplog
) -> None:
    # One follow stream for three chatty pods: two of them must fall back to periodic reads,
    # and every pod's every line still arrives exactly once.
    monkeypatch.setenv("AIRFLOW__KPO_ASYNC__MAX_LOG_STREAMS", "1")
    ref = ClusterRef(config_file=sim.kubeconfig_path)
    try:
        client = await shared_client(ref)
        assert client.limits.log_streams == 1
        chatty = [pod_body(f"chatty-{i}", duration_seconds=2, log_lines_per_second=10) for i in range(3)]
        await create_pods(sim, chatty)
        from kpo_async.testing.logcapture import capture_logs

        with capture_logs() as logs:
            triggers = [
                PodTrigger(
                    pod_name=f"chatty-{i}",
                    namespace="default",
                    cluster=ref.to_dict(),
                    startup_deadline=time.time() + 30,
                    log_poll_seconds=0.5,
                )
                for i in range(3)
            ]
            events = await asyncio.gather(*(anext(t.run()) for t in triggers))
        assert all(e.payload["status"] == "success" for e in events)
        # Airflow >= 3.1 gives triggers a structlog logger, 3.0 a standard-library one.
        messages = [str(e.get("event", "")) for e in logs] + [r.getMessage() for r in caplog.records]
        lines = [text for text in messages if text.startswith("[base] ")]
        assert len(lines) == 3 * 20
        assert len(set(lines)) == 20  # the same 20 texts from each pod
        assert sorted(lines) == sorted([f"[base] line {n}" for n in range(1, 21)] * 3)
    finally:
        await stop_shared_watchers()
        await close_shared_clients()
