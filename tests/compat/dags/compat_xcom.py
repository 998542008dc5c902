"""XCom: a pushed result and its consumer, a missing return.json, a pod that fails after writing
its result, the deferrable path. Runs unchanged with both operators (tests/compat)."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

NS = "compat"

with DAG(dag_id="compat_xcom", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    write = KubernetesPodOperator(
        task_id="write_xcom",
        name="write-xcom",
        namespace=NS,
        image="alpine:3.20",
        cmds=["sh", "-c", "mkdir -p /airflow/xcom; echo '[1, 2, 3, 4]' > /airflow/xcom/return.json"],
        do_xcom_push=True,
        get_logs=True,
    )
    consume = BashOperator(
        task_id="consume",
        bash_command="echo \"first={{ ti.xcom_pull(task_ids='write_xcom')[0] }}\"",
    )
    write >> consume

    KubernetesPodOperator(
        task_id="deferred_xcom",
        name="deferred-xcom",
        namespace=NS,
        image="alpine:3.20",
        cmds=["sh", "-c", "echo 'working'; echo '{\"answer\": 42}' > /airflow/xcom/return.json"],
        do_xcom_push=True,
        deferrable=True,
        get_logs=True,
    )

    KubernetesPodOperator(
        task_id="no_return_json",
        name="no-return-json",
        namespace=NS,
        image="alpine:3.20",
        cmds=["sh", "-c", "echo 'no result written'"],
        do_xcom_push=True,
        get_logs=True,
    )

    KubernetesPodOperator(
        task_id="fail_after_xcom",
        name="fail-after-xcom",
        namespace=NS,
        image="alpine:3.20",
        cmds=["sh", "-c", "echo '\"partial\"' > /airflow/xcom/return.json; echo 'then failing'; exit 3"],
        do_xcom_push=True,
        get_logs=True,
    )
