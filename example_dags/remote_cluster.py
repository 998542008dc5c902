"""A pod on another cluster, chosen three ways: a connection, a kubeconfig file, a context.

This mirrors the guide's EKS example without the node-group tasks. Each task names its cluster
explicitly; the connection and variables they use are set up by the deployment (the demo points
all three at the embedded cluster):

- ``remote_k8s``: an Airflow connection of type ``kubernetes`` (extras ``kube_config_path`` or
  inline ``kube_config``, optional ``cluster_context`` and ``namespace``), exactly as for the
  official operator.
- ``remote_kubeconfig`` / ``remote_context``: Airflow variables giving a kubeconfig path and
  context, used through the templated ``config_file`` and ``cluster_context`` arguments.
The kubeconfig must exist on the workers *and* the triggerer (or use an inline connection).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from kpo_async import AsyncKubernetesPodOperator

with DAG(
    dag_id="example_kpo_async_remote_cluster",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["kpo-async", "example"],
) as dag:
    by_connection = AsyncKubernetesPodOperator(
        task_id="run_via_connection",
        kubernetes_conn_id="remote_k8s",
        image="ubuntu:24.04",
        cmds=["bash", "-cx"],
        arguments=["echo hello from the cluster behind connection remote_k8s"],
        name="remote-by-conn",
    )

    by_kubeconfig = AsyncKubernetesPodOperator(
        task_id="run_via_kubeconfig_and_context",
        kubernetes_conn_id=None,
        config_file="{{ var.value.remote_kubeconfig }}",
        cluster_context="{{ var.value.remote_context }}",
        image="ubuntu:24.04",
        cmds=["bash", "-cx"],
        arguments=["echo hello from context $CONTEXT_NAME"],
        env_vars={"CONTEXT_NAME": "{{ var.value.remote_context }}"},
        name="remote-by-file",
    )

    by_connection >> by_kubeconfig
