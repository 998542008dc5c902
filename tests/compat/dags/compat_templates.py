"""Templating: Jinja inside Kubernetes objects and in plain arguments, a pod template file.
Runs unchanged with both operators (tests/compat)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG
from kubernetes.client import models as k8s

NS = "compat"
TEMPLATE = str(Path(__file__).with_name("compat_pod_template.yaml"))

with DAG(
    dag_id="compat_templates",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"who": "compat"},
):
    KubernetesPodOperator(
        task_id="jinja_in_k8s_objects",
        name="jinja-objects",
        namespace=NS,
        image="alpine:3.20",
        cmds=["sh", "-c", 'echo "object=$OBJECT"'],
        env_vars=[k8s.V1EnvVar(name="OBJECT", value="{{ ds }}-{{ params.who }}")],
        get_logs=True,
    )

    KubernetesPodOperator(
        task_id="jinja_in_arguments",
        name="jinja-arguments",
        namespace=NS,
        image="alpine:3.20",
        cmds=["sh", "-c"],
        arguments=['echo "task={{ task.task_id }} dag={{ dag.dag_id }} plain=$PLAIN"'],
        env_vars={"PLAIN": "{{ ds }}-{{ params.who }}"},
        labels={"who": "{{ params.who }}"},
        get_logs=True,
    )

    KubernetesPodOperator(
        task_id="from_pod_template",
        name="from-template",
        namespace=NS,
        pod_template_file=TEMPLATE,
        arguments=['echo "from template: $TEMPLATE_VAR"'],
        get_logs=True,
    )
