"""`end_from_trigger` without the Airflow services: what the operator hands its trigger, and what
sends the task back to a worker. The triggerer's side (the XCom pushed, the task-end events, a
killed triggerer) needs the real services: tests/airflow/end_from_trigger_cases.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kpo_async import AsyncKubernetesPodOperator
from kpo_async.airflow_compat import triggerer_ends_tasks
from kpo_async.testing import harness
from kpo_async.testing.harness import FakeTI, behavior, make_operator, stored_kwargs, submit, trigger_from
from kpo_async.testing.logcapture import capture_logs

#: Airflow 3.3+; before, every task resumes on a worker, and the operator says so when it defers.
ENDS_THERE = triggerer_ends_tasks()
TOO_OLD = "Airflow < 3.3's triggerer cannot end a task for its trigger"
needs_3_3 = pytest.mark.skipif(not ENDS_THERE, reason=f"{TOO_OLD}: tested by what the operator says there")

FINISH = {
    "on_finish_action": "delete_succeeded_pod",
    "log_events_on_failure": True,
    "log_pod_spec_on_failure": False,
    "skip_on_exit_code": [3, 4],
}


def events(logs: list[dict[str, Any]]) -> list[str]:
    return [str(entry["event"]) for entry in logs]


@needs_3_3
def test_the_trigger_is_told_how_to_end_the_task(sim_thread) -> None:
    op = make_operator(
        sim_thread,
        "told-how",
        end_from_trigger=True,
        on_finish_action="delete_succeeded_pod",
        log_events_on_failure=True,
        log_pod_spec_on_failure=False,
        skip_on_exit_code=[3, 4],
        annotations=behavior(duration_seconds=30),
    )
    classpath, kwargs = stored_kwargs(submit(op, FakeTI(op.task_id)))
    assert kwargs["end_from_trigger"] == FINISH
    # The stored row re-creates the same trigger, which stores the same row again.
    assert trigger_from(classpath, kwargs).serialize()[1]["end_from_trigger"] == FINISH


@pytest.mark.parametrize(
    ("setting", "argument", "ends_there"),
    [
        (None, None, False),
        ("True", None, True),
        ("True", False, False),
        ("False", True, True),
    ],
)
def test_the_argument_wins_over_the_setting(
    sim_thread, monkeypatch: pytest.MonkeyPatch, setting: str | None, argument: bool | None, ends_there: bool
) -> None:
    if setting is None:
        monkeypatch.delenv("AIRFLOW__KPO_ASYNC__END_FROM_TRIGGER", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__KPO_ASYNC__END_FROM_TRIGGER", setting)
    name = f"setting-{setting}-argument-{argument}".lower()
    op = make_operator(sim_thread, name, end_from_trigger=argument, annotations=behavior(duration_seconds=30))
    _, kwargs = stored_kwargs(submit(op, FakeTI(op.task_id)))
    # Without it the row is what earlier versions stored.
    assert ("end_from_trigger" in kwargs) is (ends_there and ENDS_THERE)


class _Callback:
    """A callbacks class (the official operator's kind): no moment, yet only a worker calls them."""


class _Overrides(AsyncKubernetesPodOperator):
    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        return super().execute_complete(context, event)


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"callbacks": _Callback}, "callbacks run their last moments on a worker"),
        ({"multiple_outputs": True}, "multiple_outputs fans the XCom out on a worker"),
        (
            {"outlets": [SimpleNamespace(name="a", uri="s3://a")]},
            "a worker records the outlets' asset events",
        ),
        ({"operator_class": _Overrides}, "_Overrides overrides execute_complete"),
    ],
)
def test_what_only_a_worker_does_keeps_the_task_resuming_there(
    sim_thread, extra: dict[str, Any], why: str
) -> None:
    operator_class = extra.pop("operator_class", None)
    name = f"worker-needed-{len(why)}"
    op = make_operator(
        sim_thread, name, end_from_trigger=True, annotations=behavior(duration_seconds=30), **extra
    )
    if operator_class is not None:
        op.__class__ = operator_class
    with capture_logs() as logs:
        _, kwargs = stored_kwargs(submit(op, FakeTI(op.task_id)))
    assert "end_from_trigger" not in kwargs
    assert f"end_from_trigger: this task finishes on a worker, as {why if ENDS_THERE else TOO_OLD}" in events(
        logs
    )


def test_without_a_triggerer_the_worker_finishes_the_task(sim_thread) -> None:
    """`airflow dags test` runs the trigger in line (no triggerer, no task instance on it): the
    trigger fires the ordinary event and the worker finalizes, with the same XCom."""
    op = make_operator(
        sim_thread, "in-line", end_from_trigger=True, do_xcom_push=True, annotations=behavior(xcom={"n": 1})
    )
    with capture_logs() as logs:
        event, result = harness.run_task(op)
    assert event["status"] == "success" and result == {"n": 1}
    said = "end_from_trigger: the task finishes on a worker, as airflow dags test runs the trigger in line"
    assert said in events(logs) or not ENDS_THERE
    if not ENDS_THERE:
        assert f"end_from_trigger: this task finishes on a worker, as {TOO_OLD}" in events(logs)


@needs_3_3
def test_an_xcom_over_a_mebibyte_is_pushed_by_a_worker(sim_thread) -> None:
    value = "x" * (1 << 20)
    write = "import json; json.dump('x' * (1 << 20), open('/airflow/xcom/return.json', 'w'))"
    op = make_operator(
        sim_thread, "big-xcom", end_from_trigger=True, do_xcom_push=True, cmds=["python", "-c", write]
    )
    ti = FakeTI(op.task_id)
    trigger = trigger_from(*stored_kwargs(submit(op, ti)))
    trigger.task_instance = ti  # as the triggerer sets it
    with capture_logs() as logs:
        event = harness.run_trigger(trigger)
    assert event["status"] == "success" and event["xcom"] == value
    size = len(value) + 2  # as JSON
    said = f"its XCom's {size} bytes are over the 1048576 a trigger pushes"
    assert f"end_from_trigger: the task finishes on a worker, as {said}" in events(logs)
    assert op.execute_complete(harness.context_for(ti), event) == value


@needs_3_3
@pytest.mark.parametrize("decorator", ["kpo_async", "kpo_async_cmd"])
def test_the_decorators_take_it(sim_thread, decorator: str) -> None:
    from airflow.sdk import DAG, task

    with DAG(f"decorated_{decorator}", schedule=None) as dag:

        @getattr(task, decorator)(
            kubernetes_conn_id=None,
            config_file=str(sim_thread.kubeconfig_path),
            namespace="default",
            image="alpine:3.20",
            end_from_trigger=True,
        )
        def hello() -> list[str]:
            return ["sh", "-c", "sleep 30"]

        hello()

    op = dag.get_task("hello")
    _, kwargs = stored_kwargs(submit(op, FakeTI(op.task_id, dag_id=dag.dag_id)))
    assert kwargs["end_from_trigger"]["on_finish_action"] == "delete_pod"
