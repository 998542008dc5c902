"""A long pod, to watch its log arrive in the Airflow UI while the task is deferred.

The pod prints a numbered line every second for ``seconds`` seconds (3 minutes by default), then
writes how many lines it printed as the task's XCom. While it runs, no worker slot is held: the
triggerer streams each line into the task's log as the pod prints it, and the UI shows them on
the task instance's log page. ``exit_code`` makes the pod fail at the end instead, to see what a
failed pod looks like (the reason and its last lines). Both are DAG params: trigger the DAG with
another config to change them, e.g. ``{"seconds": 20, "exit_code": 3}``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from kpo_async import AsyncKubernetesPodOperator

with DAG(
    dag_id="example_kpo_async_long_running",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["kpo-async", "example"],
    params={
        "seconds": Param(180, type="integer", minimum=1, description="how long the pod runs"),
        "exit_code": Param(0, type="integer", minimum=0, maximum=255, description="the pod's exit code"),
    },
) as dag:
    count_lines = AsyncKubernetesPodOperator(
        task_id="count_lines",
        image="alpine:3.20",
        name="count-lines",
        cmds=["sh", "-c"],
        arguments=[
            'i=1; while [ "$i" -le "$SECONDS_TO_RUN" ]; do '
            'echo "line $i of $SECONDS_TO_RUN"; i=$((i + 1)); sleep 1; done; '
            'if [ "$EXIT_CODE" -ne 0 ]; then '
            'echo "giving up with exit code $EXIT_CODE" >&2; exit "$EXIT_CODE"; fi; '
            'echo "{\\"lines\\": $SECONDS_TO_RUN}" > /airflow/xcom/return.json'
        ],
        env_vars={"SECONDS_TO_RUN": "{{ params.seconds }}", "EXIT_CODE": "{{ params.exit_code }}"},
        get_logs=True,
        log_events_on_failure=True,
        do_xcom_push=True,
    )
