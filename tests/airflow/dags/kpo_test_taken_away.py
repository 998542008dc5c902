"""Test-only DAG: the cluster takes the pod away, and a spec no retry can fix.

`relaunched`: an init container holds the base container for a few seconds, in which the test
evicts the pod (through the embedded cluster's kubelet); the task replaces it within its try.
`refused`: a label value the API server refuses (422); with retries left, the task still fails at
once. `quota_bound`: namespace `quota-dag` has a ResourceQuota of one pod, taken by the test's
`blocker` pod, which the test deletes once the task waits on the quota. Variable (set by the test
through AIRFLOW_VAR_*): taken_kubeconfig.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG
from kubernetes.client import models as k8s

from kpo_async import AsyncKubernetesPodOperator

with DAG(
    dag_id="kpo_test_taken_away",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["kpo-async", "test"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=1)},
) as dag:
    common = {
        "kubernetes_conn_id": None,
        "config_file": "{{ var.value.taken_kubeconfig }}",
        "namespace": "default",
        "image": "alpine:3.20",
    }
    AsyncKubernetesPodOperator(
        task_id="relaunched",
        name="relaunched",
        init_containers=[
            k8s.V1Container(name="prepare", image="alpine:3.20", command=["sh", "-c", "sleep 4"])
        ],
        cmds=["sh", "-c"],
        arguments=["echo work done; echo '{\"rows\": 5}' > /airflow/xcom/return.json"],
        do_xcom_push=True,
        **common,
    )
    AsyncKubernetesPodOperator(
        task_id="refused",
        name="refused",
        labels={"team": "data eng"},
        cmds=["true"],
        **common,
    )
    AsyncKubernetesPodOperator(
        task_id="quota_bound",
        name="quota-bound",
        cmds=["sh", "-c"],
        arguments=["echo created once the quota had room"],
        startup_timeout_seconds=120,
        **{**common, "namespace": "quota-dag"},
    )
