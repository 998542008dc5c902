"""Resuming the log: after a cut stream, and in a new trigger after the triggerer stopped.

A triggerer shutting down cancels each trigger's task and then awaits its `cleanup()`, which records
the log cursor on the pod. A new triggerer re-creates the trigger from the kwargs stored when the
task deferred (never updated afterwards), so the new trigger must take the cursor from the pod
and continue exactly after the last line delivered. Deadlines in those kwargs are absolute.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from kpo_async.airflow_compat import AirflowTaskTimeout
from kpo_async.errors import PodFailedError
from kpo_async.identity import LOG_CURSOR_ANNOTATION
from kpo_async.testing.harness import run_until
from kpo_async.testing.logcapture import capture_logs
from kpo_async.testing.sim import Fault
from tests.reliability.conftest import (
    FakeTI,
    behavior,
    context_for,
    live_pods,
    make_operator,
    numbered,
    pod_lines,
    read_pod,
    run_task,
    run_trigger,
    stored_kwargs,
    submit,
    trigger_from,
)

NS = "/api/v1/namespaces/default/pods"


def test_a_stream_cut_again_and_again_mid_line_resumes_without_gaps_or_repeats(sim) -> None:
    """Cuts of the followed stream at different byte offsets (inside a timestamp, inside a text)."""
    name = "cut-often"
    for offset in (100, 1222, 3001):
        sim.faults.add(Fault(method="GET", path=rf"{NS}/{name}-[0-9a-f]{{8}}/log$", drop_after_bytes=offset))
    op = make_operator(sim, name, annotations=behavior(duration_seconds=2, log_lines_per_second=50))
    with capture_logs() as logs:
        event, _ = run_task(op)
    assert event["status"] == "success"
    assert pod_lines(logs) == numbered(100)
    assert sim.faults.list() == []  # every cut happened


def test_lines_with_identical_timestamps_resume_exactly(sim) -> None:
    """3,000 lines in groups of three sharing one timestamp (ns), all in one second; cut inside groups.

    `sinceTime` has one-second precision, so every resumed read starts again at line 1: the cursor's
    count of lines at its exact timestamp is what prevents repeats inside a group.
    """
    name = "same-stamp"
    # ~47 bytes a line with its timestamp: the cuts fall inside groups of lines with one timestamp
    for offset in (4_700, 9_424, 47_000):
        sim.faults.add(Fault(method="GET", path=rf"{NS}/{name}-[0-9a-f]{{8}}/log$", drop_after_bytes=offset))
    op = make_operator(
        sim, name, annotations=behavior(duration_seconds=1e-6, log_lines_per_second=3e9, log_line="same {i}")
    )
    with capture_logs() as logs:
        event, _ = run_task(op)
    assert event["status"] == "success"
    assert pod_lines(logs) == numbered(3000, "same {i}")
    assert sim.faults.list() == []


# -- a triggerer shutdown and a new trigger from the original kwargs ----------------------------------


def stop_after(classpath: str, kwargs: dict[str, Any], lines: int, *, cleanup: bool) -> list[str]:
    """One triggerer process's life: the trigger from the stored kwargs, stopped after `lines` lines."""
    with capture_logs() as logs:
        asyncio.run(
            run_until(trigger_from(classpath, kwargs), lambda: len(pod_lines(logs)) >= lines, cleanup=cleanup)
        )
    return pod_lines(logs)


def test_graceful_shutdowns_resume_exactly_after_the_last_delivered_line(sim) -> None:
    name = "resume"
    op = make_operator(
        sim,
        name,
        do_xcom_push=True,
        annotations=behavior(duration_seconds=4, log_lines_per_second=15, xcom=[7]),
    )
    ti = FakeTI(name)
    deferred = submit(op, ti)
    classpath, kwargs = stored_kwargs(deferred)  # what the DB holds: never updated afterwards
    assert kwargs["log_cursor"] is None

    first = stop_after(classpath, kwargs, 12, cleanup=True)
    pod = read_pod(sim, deferred.trigger.pod_name)
    assert pod is not None and pod["metadata"]["annotations"].get(LOG_CURSOR_ANNOTATION), "no checkpoint"
    second = stop_after(classpath, kwargs, len(first) + 15, cleanup=True)
    with capture_logs() as logs:
        event = run_trigger(trigger_from(classpath, kwargs))
    third = pod_lines(logs)

    assert first == numbered(len(first))
    assert first + second + third == numbered(60)  # nothing missing, nothing twice, in order
    assert len(second) >= 15 and third  # each triggerer delivered its part
    assert op.execute_complete(context_for(ti), event) == [7]
    assert live_pods(sim, name) == []


def test_after_a_hard_kill_lines_since_the_last_checkpoint_repeat_but_none_is_lost(sim) -> None:
    """No cleanup() ran: the new trigger starts from the last recorded cursor (here: none)."""
    name = "hard-kill"
    op = make_operator(sim, name, annotations=behavior(duration_seconds=1.5, log_lines_per_second=20))
    ti = FakeTI(name)
    deferred = submit(op, ti)
    classpath, kwargs = stored_kwargs(deferred)
    first = stop_after(classpath, kwargs, 10, cleanup=False)
    with capture_logs() as logs:
        event = run_trigger(trigger_from(classpath, kwargs))
    second = pod_lines(logs)
    # the default checkpoint interval (60 s) did not pass: everything again, repeated but not lost
    assert second == numbered(30)
    assert first == numbered(len(first))
    op.execute_complete(context_for(ti), event)
    assert live_pods(sim, name) == []


def test_the_cursor_is_checkpointed_while_lines_flow_bounding_what_a_hard_kill_repeats(sim) -> None:
    """With log_checkpoint_seconds=0.5 a hard kill repeats at most about half a second of lines."""
    name = "periodic"
    op = make_operator(sim, name, annotations=behavior(duration_seconds=2.5, log_lines_per_second=16))
    ti = FakeTI(name)
    deferred = submit(op, ti)
    classpath, kwargs = stored_kwargs(deferred)
    kwargs = {**kwargs, "log_checkpoint_seconds": 0.5}
    first = stop_after(classpath, kwargs, 20, cleanup=False)
    pod = read_pod(sim, deferred.trigger.pod_name)
    assert pod is not None
    assert pod["metadata"]["annotations"].get(LOG_CURSOR_ANNOTATION), "no checkpoint after 1.25 s of lines"
    with capture_logs() as logs:
        event = run_trigger(trigger_from(classpath, kwargs))
    second = pod_lines(logs)
    repeated = len(first) + len(second) - 40
    assert sorted(set(first + second), key=lambda line: int(line.split()[1])) == numbered(40)
    assert second == numbered(40)[40 - len(second) :]
    assert 0 <= repeated <= 16, f"{repeated} lines repeated after a hard kill"  # 0.5 s + slack for load
    op.execute_complete(context_for(ti), event)


# -- deadlines are absolute ---------------------------------------------------------------------------


def test_a_recreated_trigger_whose_startup_deadline_passed_times_out_at_once(sim) -> None:
    name = "late-start"
    op = make_operator(sim, name, node_selector={"disktype": "ssd"}, startup_timeout_seconds=3)
    ti = FakeTI(name)
    deferred = submit(op, ti)
    classpath, kwargs = stored_kwargs(deferred)
    with capture_logs():
        asyncio.run(_stop_soon(trigger_from(classpath, kwargs)))
    time.sleep(max(0.0, kwargs["schedule_deadline"] - time.time()))
    started = time.monotonic()
    event = run_trigger(trigger_from(classpath, kwargs))
    # a deadline counted again from the re-creation would take 3 s more
    assert time.monotonic() - started < 2, "the new trigger did not use the original deadline"
    assert event["status"] == "timeout" and event["reason"] == "ScheduleTimeout"
    assert "schedule_timeout_seconds" in event["message"] and "FailedScheduling" in event["message"]
    with pytest.raises(PodFailedError):
        op.execute_complete(context_for(ti), event)
    assert live_pods(sim, name) == []


def test_a_recreated_trigger_whose_execution_deadline_passed_times_out_at_once(sim) -> None:
    name = "late-end"
    op = make_operator(
        sim, name, annotations=behavior(duration_seconds=60), execution_timeout=timedelta(seconds=3)
    )
    ti = FakeTI(name)
    deferred = submit(op, ti)
    classpath, kwargs = stored_kwargs(deferred)
    with capture_logs():
        asyncio.run(_stop_soon(trigger_from(classpath, kwargs)))
    time.sleep(max(0.0, kwargs["execution_deadline"] - time.time()))
    started = time.monotonic()
    event = run_trigger(trigger_from(classpath, kwargs))
    # a deadline counted again from the re-creation would take 3 s more
    assert time.monotonic() - started < 2, "the new trigger did not use the original deadline"
    assert event["status"] == "timeout" and event["reason"] == "ExecutionTimeout"
    with pytest.raises(AirflowTaskTimeout):
        op.execute_complete(context_for(ti), event)
    assert live_pods(sim, name) == []


async def _stop_soon(trigger) -> None:
    """A triggerer that runs the trigger for half a second, then shuts down gracefully."""
    until = time.monotonic() + 0.5
    await run_until(trigger, lambda: time.monotonic() >= until)
