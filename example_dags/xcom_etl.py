"""The guide's XCom ETL pipeline: extract -> transform in a pod -> load.

`transform` receives the extracted value through a templated environment variable, multiplies it
by 23 in shell and writes ``{"return_value": "<n>"}`` to ``/airflow/xcom/return.json``; the
trigger reads that file from the XCom sidecar and the value is pushed as the task's XCom.
"""

from __future__ import annotations

import random
from datetime import datetime

from airflow.sdk import DAG, task

from kpo_async import AsyncKubernetesPodOperator

with DAG(
    dag_id="example_kpo_async_xcom_etl",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["kpo-async", "example"],
) as dag:

    @task
    def extract_data() -> int:
        # simulating querying from a database
        return random.randint(0, 100)

    transform = AsyncKubernetesPodOperator(
        task_id="transform",
        image="alpine:3.20",
        name="transform",
        cmds=["sh", "-c"],
        arguments=[
            'mkdir -p /airflow/xcom && echo "multiplying $DATA_POINT by 23" && '
            'echo "{\\"return_value\\": \\"$((23 * DATA_POINT))\\"}" > /airflow/xcom/return.json'
        ],
        get_logs=True,
        log_events_on_failure=True,
        # pull a value from XCom with Jinja templating and give it to the pod as an env var
        env_vars={"DATA_POINT": "{{ ti.xcom_pull(task_ids='extract_data', key='return_value') }}"},
        # push the contents of /airflow/xcom/return.json as this task's XCom
        do_xcom_push=True,
    )

    @task
    def load_data(**context) -> str:
        # pull the XCom value that has been pushed by the pod
        transformed = context["ti"].xcom_pull(task_ids="transform", key="return_value")
        print(f"loaded transformed data point: {transformed['return_value']}")
        return transformed["return_value"]

    extract_data() >> transform >> load_data()
