"""Issue 11's official behaviours with `deferrable=False` too: the same monitor runs on the worker,
so callbacks, every requested container's log, a missing result file and a failed pod's XCom behave
as in deferrable mode (tests/core/test_official_behaviour.py, test_container_logs.py, test_operator.py)."""

from __future__ import annotations

import pytest

from kpo_async.errors import PodFailedError
from kpo_async.testing.harness import FakeTI, context_for, make_operator
from kpo_async.testing.logcapture import capture_logs
from tests.core.test_container_logs import init, lines, two_containers
from tests.core.test_official_behaviour import CALLS, RecordingCallback


def run_inline(op, ti: FakeTI | None = None):  # type: ignore[no-untyped-def]
    ti = ti or FakeTI(op.task_id)
    return op.execute(context_for(ti))


def test_callbacks_are_called_on_the_worker(sim_thread) -> None:
    CALLS.clear()
    op = make_operator(
        sim_thread,
        name="inline-callbacks",
        deferrable=False,
        cmds=["sh", "-c"],
        arguments=["echo one; echo two"],
        callbacks=RecordingCallback,
    )
    run_inline(op)
    moments = [name for name, _, _ in CALLS if name != "progress_callback"]
    assert moments[:2] == ["on_pod_manifest_created", "on_pod_creation"]
    assert moments[-3:] == ["on_pod_completion", "on_pod_teardown", "on_pod_cleanup"]
    assert "on_pod_starting" in moments
    lines_seen = [(kw["container"], kw["line"]) for name, _, kw in CALLS if name == "progress_callback"]
    assert lines_seen == [("base", "one"), ("base", "two")]


def test_every_requested_container_is_logged(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        name="inline-logs",
        deferrable=False,
        cmds=["sh", "-c"],
        arguments=["sleep 1; echo base says hi"],
        full_pod_spec=two_containers("echo side says hi; echo '[ERROR] side broke'; sleep 30"),
        init_containers=[init("init-a", "echo init says hi")],
        container_logs=True,
        init_container_logs=True,
    )
    with capture_logs() as logs:
        run_inline(op)
    got = lines(logs)
    assert ("info", "[init-a] init says hi") in got and ("info", "[base] base says hi") in got
    assert ("info", "[side] side says hi") in got and ("error", "[side] [ERROR] side broke") in got


def test_a_missing_result_file_is_none(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        name="inline-no-xcom",
        deferrable=False,
        do_xcom_push=True,
        cmds=["sh", "-c"],
        arguments=["echo working"],
    )
    assert run_inline(op) is None


def test_a_failed_pods_xcom_is_pushed(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        name="inline-failed-xcom",
        deferrable=False,
        do_xcom_push=True,
        cmds=["sh", "-c"],
        arguments=["echo '{\"rows\": 2}' > /airflow/xcom/return.json; exit 4"],
    )
    ti = FakeTI(op.task_id)
    with pytest.raises(PodFailedError, match="exited with code 4"):
        run_inline(op, ti)
    assert ti.xcoms["return_value"] == {"rows": 2}
