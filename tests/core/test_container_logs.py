"""Logs of every requested container (init containers included), streamed by the trigger with one
resumable cursor per container; prefixes, levels, `log_formatter`; and the scheduling window."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from kubernetes.client import models as k8s
from kubernetes_asyncio import client, config

from kpo_async.errors import PodFailedError
from kpo_async.testing.harness import (
    FakeTI,
    make_operator,
    run_task,
    run_trigger,
    run_until,
    stored_kwargs,
    submit,
    trigger_from,
)
from kpo_async.testing.logcapture import capture_logs


def shout(container: str, line: str) -> str:
    """An importable `log_formatter`: the triggerer imports it by name."""
    return f"{container.upper()} | {line}"


def loop(word: str, count: int, pause: float = 0.0) -> str:
    return f'for i in $(seq 1 {count}); do echo "{word} $i"; sleep {pause}; done'


def two_containers(side_script: str) -> k8s.V1Pod:
    side = k8s.V1Container(name="side", image="alpine:3.20", command=["sh", "-c", side_script])
    return k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base"), side]))


def init(name: str, script: str) -> k8s.V1Container:
    return k8s.V1Container(name=name, image="alpine:3.20", command=["sh", "-c", script])


def lines(logs: list[dict[str, Any]], prefix: str = "[") -> list[tuple[str, str]]:
    return [(e["log_level"], e["event"]) for e in logs if str(e.get("event", "")).startswith(prefix)]


def test_every_requested_container_is_streamed_with_levels_and_prefixes(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        name="many-logs",
        cmds=["sh", "-c"],
        arguments=["sleep 1; echo base says hi; echo 'WARNING: base is low on disk'"],
        full_pod_spec=two_containers("echo side says hi; echo '[ERROR] side broke'; sleep 30"),
        init_containers=[init("init-a", "echo init says hi; echo 'error: init complained'")],
        container_logs=True,
        init_container_logs=True,
    )
    with capture_logs() as logs:
        run_task(op)
    got = lines(logs)
    assert ("info", "[init-a] init says hi") in got
    assert ("error", "[init-a] error: init complained") in got
    assert ("info", "[side] side says hi") in got and ("error", "[side] [ERROR] side broke") in got
    assert ("info", "[base] base says hi") in got
    assert ("warning", "[base] WARNING: base is low on disk") in got
    assert len(got) == len(set(got)) == 6  # each line once
    # init containers run first: their lines come before any other container's
    assert got.index(("info", "[init-a] init says hi")) < got.index(("info", "[base] base says hi"))


def test_only_the_named_containers_and_no_prefix(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        name="named-logs",
        cmds=["sh", "-c"],
        arguments=["sleep 1; echo from base"],
        full_pod_spec=two_containers("echo from side"),
        init_containers=[init("init-a", "echo from init-a"), init("init-b", "echo from init-b")],
        container_logs=["side"],
        init_container_logs=["init-b"],
        container_name_log_prefix_enabled=False,
    )
    with capture_logs() as logs:
        run_task(op)
    got = [e["event"] for e in logs if str(e.get("event", "")).startswith("from ")]
    assert sorted(got) == ["from init-b", "from side"]


def test_a_container_that_starts_after_the_base_ended_is_still_read(sim_thread) -> None:
    # The kubelet starts containers one after the other: a sidecar whose image is still being
    # pulled starts after a quick base container has already ended.
    late = k8s.V1Container(
        name="late",
        image="example.test/late:1",
        image_pull_policy="Always",
        command=["sh", "-c", "echo late line"],
    )
    op = make_operator(
        sim_thread,
        name="late-sidecar",
        cmds=["sh", "-c"],
        arguments=["echo base line"],
        full_pod_spec=k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base"), late])),
        container_logs=True,
    )
    with capture_logs() as logs:
        run_task(op)
    got = [e["event"] for e in logs if str(e.get("event", "")).startswith("[")]
    assert sorted(got) == ["[base] base line", "[late] late line"]


def test_an_importable_log_formatter_is_used_by_the_trigger(sim_thread) -> None:
    op = make_operator(
        sim_thread, name="formatted", cmds=["sh", "-c"], arguments=["echo hello"], log_formatter=shout
    )
    deferred = submit(op, FakeTI("formatted"))
    assert stored_kwargs(deferred)[1]["log_formatter"] == f"{__name__}:shout"
    with capture_logs() as logs:
        op2 = make_operator(
            sim_thread, name="formatted", cmds=["sh", "-c"], arguments=["echo hello"], log_formatter=shout
        )
        run_task(op2, FakeTI("formatted", try_number=2))
    assert "BASE | hello" in [e["event"] for e in logs]


def test_a_failed_init_container_s_log_is_in_the_task_log_and_the_failure(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        name="init-fails",
        init_containers=[init("prepare", "echo cannot find input; exit 4")],
        init_container_logs=True,
    )
    with capture_logs() as logs, pytest.raises(PodFailedError) as info:
        run_task(op)
    assert ("info", "[prepare] cannot find input") in lines(logs)
    assert "[prepare] cannot find input" in str(info.value)


def test_each_container_resumes_exactly_after_a_triggerer_restart(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        name="resume-many",
        cmds=["sh", "-c"],
        arguments=[loop("base", 40, 0.05)],
        full_pod_spec=two_containers(loop("side", 30, 0.05)),
        init_containers=[init("init-a", loop("init", 10))],
        container_logs=True,
        init_container_logs=True,
    )
    ti = FakeTI("resume-many")
    classpath, kwargs = stored_kwargs(submit(op, ti))
    with capture_logs() as first:
        asyncio.run(run_until(trigger_from(classpath, kwargs), lambda: len(lines(first)) >= 25))
    with capture_logs() as second:
        asyncio.run(run_until(trigger_from(classpath, kwargs), lambda: len(lines(second)) >= 10))
    with capture_logs() as third:
        event = run_trigger(trigger_from(classpath, kwargs), 60)
    assert event["status"] == "success"
    delivered = [text for _, text in lines(first) + lines(second) + lines(third)]
    for word, name, count in (("init", "init-a", 10), ("side", "side", 30), ("base", "base", 40)):
        mine = [t for t in delivered if t.startswith(f"[{name}] ")]
        assert mine == [f"[{name}] {word} {i}" for i in range(1, count + 1)], name
    assert "," in event["log_cursor"] and "side=" in event["log_cursor"]


# -- the scheduling window, then the startup window ------------------------------------------------


def test_schedule_timeout_is_its_own_window(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        name="never-scheduled",
        node_selector={"disktype": "ssd"},
        schedule_timeout_seconds=2,
        startup_timeout_seconds=120,
    )
    started = time.monotonic()
    with pytest.raises(PodFailedError) as info:
        run_task(op)
    assert time.monotonic() - started < 30  # not startup_timeout_seconds
    assert "was not scheduled before schedule_timeout_seconds" in str(info.value)
    assert "FailedScheduling" in str(info.value)


def test_a_pod_scheduled_late_still_gets_its_whole_startup_window(sim_thread) -> None:
    """The autoscaling case: the pod waits ~4 s to be scheduled (its claim appears late, as a node
    would), then has startup_timeout_seconds (2 s) from there, not from the deferral."""
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}

    async def create_claim_later() -> None:
        await asyncio.sleep(4)
        api = await config.new_client_from_config(config_file=sim_thread.kubeconfig_path)
        async with api:
            await client.CoreV1Api(api).create_namespaced_persistent_volume_claim(
                "default", {"metadata": {"name": "late-claim"}, "spec": claim}
            )

    op = make_operator(
        sim_thread,
        name="scheduled-late",
        cmds=["sh", "-c"],
        arguments=["echo started"],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "late-claim"}}],
        volume_mounts=[{"name": "data", "mountPath": "/data"}],
        schedule_timeout_seconds=60,
        startup_timeout_seconds=2,
    )
    started = time.monotonic()
    creator = threading.Thread(target=asyncio.run, args=(create_claim_later(),))
    creator.start()
    try:
        event, _ = run_task(op)
    finally:
        creator.join()
    assert event["status"] == "success", event
    assert time.monotonic() - started > 4


def rendered(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for entry in logs:
        args = entry.get("positional_args") or ()
        out.append((entry.get("log_level", ""), str(entry["event"]) % args if args else str(entry["event"])))
    return out


def test_failure_logs_container_states_and_the_pod_spec_with_secrets_masked(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        name="fails-loud",
        cmds=["sh", "-c"],
        arguments=["exit 3"],
        env_vars={"DB_PASSWORD": "hunter2-value", "MODE": "fast"},
        log_events_on_failure=True,
    )
    with capture_logs() as logs, pytest.raises(PodFailedError):
        run_task(op)
    got = rendered(logs)
    assert any(
        level == "error" and "container base: terminated" in text and "exit_code=3" in text
        for level, text in got
    )
    spec = next(text for _, text in got if text.startswith("pod spec: "))
    assert '"MODE", "value": "fast"' in spec and "hunter2-value" not in spec and "***" in spec


def test_failure_logs_pod_events_at_the_official_levels(sim_thread) -> None:
    """`log_events_on_failure`: each event as `Pod Event: <reason> - <message>`, a Warning event at
    warning level and a Normal one at info, as the official operator logs them."""
    op = make_operator(
        sim_thread,
        name="never-pulled",
        image="kpo-async.invalid/missing:1",
        image_pull_policy="Never",
        log_events_on_failure=True,
    )
    with capture_logs() as logs, pytest.raises(PodFailedError):
        run_task(op)
    events = [(level, text) for level, text in rendered(logs) if text.startswith("Pod Event: ")]
    scheduled = [level for level, text in events if text.startswith("Pod Event: Scheduled - ")]
    assert scheduled == ["info"], events
    assert ("warning", "Pod Event: Failed - Error: ErrImageNeverPull") in events, events
    assert all(level in ("info", "warning") for level, _ in events), events
