"""Test-only DAG: every templated argument of the operator comes from Jinja.

Variables (set by the test through AIRFLOW_VAR_*): tmpl_kubeconfig, tmpl_namespace, tmpl_image,
tmpl_shell, tmpl_x, tmpl_label. The pod prints what it received; the pod is kept so the test can
read its rendered labels, image and namespace from the cluster.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from kpo_async import AsyncKubernetesPodOperator

with DAG(
    dag_id="kpo_test_templated",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["kpo-async", "test"],
) as dag:

    @task
    def produce() -> str:
        return "pulled-value-42"

    templated = AsyncKubernetesPodOperator(
        task_id="templated",
        kubernetes_conn_id=None,
        config_file="{{ var.value.tmpl_kubeconfig }}",
        namespace="{{ var.value.tmpl_namespace }}",
        image="{{ var.value.tmpl_image }}",
        name="templated-{{ ds_nodash }}",
        cmds=["{{ var.value.tmpl_shell }}", "-c"],
        arguments=[
            'echo "arg ds={{ ds }} var={{ var.value.tmpl_x }} '
            "pulled={{ ti.xcom_pull(task_ids='produce') }}\"; "
            'echo "env RENDERED_ENV=$RENDERED_ENV"; echo "env POD_NS=$POD_NS POD_LABEL=$POD_LABEL"'
        ],
        env_vars={
            "RENDERED_ENV": "{{ var.value.tmpl_x }}-{{ ds_nodash }}-{{ ti.xcom_pull(task_ids='produce') }}"
        },
        pod_runtime_info_envs=[
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['rendered']"}}},
        ],
        labels={"rendered": "{{ var.value.tmpl_label }}-{{ ds_nodash }}"},
        on_finish_action="keep_pod",
        startup_timeout_seconds=60,
    )

    produce() >> templated
