"""Test-only DAGs for tests/airflow/test_end_from_trigger.py: tasks that end on the triggerer.

The pods' behaviour comes from the embedded cluster's behaviour annotation
(``sim.kpo-async.io/behavior``): a run time, log lines, an exit code, an XCom value.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from airflow.sdk import DAG

from kpo_async import AsyncKubernetesPodOperator

BEHAVIOR = "sim.kpo-async.io/behavior"


def behavior(**spec) -> dict[str, str]:
    return {BEHAVIOR: json.dumps(spec)}


def eft_dag(dag_id: str) -> DAG:
    return DAG(dag_id=dag_id, start_date=datetime(2026, 1, 1), schedule=None, tags=["kpo-async", "test"])


def pod_task(task_id: str, **kwargs) -> AsyncKubernetesPodOperator:
    kwargs.setdefault("end_from_trigger", True)
    return AsyncKubernetesPodOperator(
        task_id=task_id,
        image="alpine:3.20",
        name=task_id.replace("_", "-"),
        startup_timeout_seconds=60,
        **kwargs,
    )


with eft_dag("kpo_eft_outcomes"):
    # Success: the XCom (templated, so that each run's differs) pushed by the trigger.
    pod_task(
        "succeeds",
        annotations={
            BEHAVIOR: '{"duration_seconds": 2, "log_lines_per_second": 2, "xcom": {"run": "{{ run_id }}"}}'
        },
        do_xcom_push=True,
    )
    # Failure with a retry: ended by the trigger on Airflow 3.3+, on a worker before.
    pod_task(
        "fails",
        annotations=behavior(duration_seconds=1, log_lines_per_second=2, exit_code=2),
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
    pod_task("skips", annotations=behavior(duration_seconds=1, exit_code=3), skip_on_exit_code=3)
    pod_task("keeps", annotations=behavior(duration_seconds=1), on_finish_action="keep_pod")
    # multiple_outputs needs a worker: the task resumes there, and its log says why.
    pod_task("worker_needed", annotations=behavior(duration_seconds=1), multiple_outputs=True)

# A pod for the triggerer killed between its cleanup and the task's end.
with eft_dag("kpo_eft_crash"):
    pod_task(
        "crash",
        annotations={BEHAVIOR: '{"duration_seconds": 3, "xcom": {"run": "{{ run_id }}"}}'},
        do_xcom_push=True,
    )

# A long pod for marking the task failed, and for clearing it.
with eft_dag("kpo_eft_long"):
    pod_task("long", annotations=behavior(duration_seconds=300, log_lines_per_second=1))
