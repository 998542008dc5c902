"""What Airflow's providers manager learns about kpo-async (entry point `apache_airflow_provider`)."""

from __future__ import annotations

from typing import Any

from kpo_async import __version__
from kpo_async.identity import CONNECTION_EXTRAS  # provider discovery must not import Airflow

CONNECTION_TYPE = "kpo_async_kubernetes"

_FIELD_LABELS = {
    "in_cluster": ("In cluster configuration", "boolean"),
    "kube_config_path": ("Kube config path (must exist on workers and triggerer)", "string"),
    "kube_config": ("Kube config (JSON or YAML, stored encrypted)", "password"),
    "namespace": ("Namespace", "string"),
    "cluster_context": ("Cluster context", "string"),
    "disable_verify_ssl": ("Disable SSL verification", "boolean"),
    "xcom_sidecar_container_image": ("XCom sidecar image", "string"),
    "xcom_sidecar_container_resources": ("XCom sidecar resources (JSON)", "string"),
}


def _conn_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in CONNECTION_EXTRAS:
        label, kind = _FIELD_LABELS[name]
        schema: dict[str, Any] = {"type": ["string", "null"]}
        if kind == "boolean":
            schema = {"type": ["boolean", "null"]}
        elif kind == "password":
            schema["format"] = "password"
        fields[name] = {"label": label, "schema": schema}
    return fields


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "kpo-async",
        "name": "kpo-async",
        "description": "Async-native KubernetesPodOperator: one shared watch per cluster and namespace "
        "on the triggerer, logs and XCom collected by the trigger.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "kpo-async",
                "external-doc-url": "https://kubernetes.io/",
                "tags": ["software"],
            }
        ],
        "operators": [{"integration-name": "kpo-async", "python-modules": ["kpo_async.operator"]}],
        "triggers": [{"integration-name": "kpo-async", "python-modules": ["triggers.pod"]}],
        "hooks": [{"integration-name": "kpo-async", "python-modules": ["kpo_async.hook"]}],
        "connection-types": [
            {
                "hook-class-name": "kpo_async.hook.KubernetesConnectionHook",
                "hook-name": "Kubernetes Cluster (kpo-async)",
                "connection-type": CONNECTION_TYPE,
                "conn-fields": _conn_fields(),
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "login", "password", "port", "extra"]
                },
            }
        ],
        "extra-links": ["kpo_async.links.PodLink"],
        # Not the official "kubernetes"/"kubernetes_cmd": both providers can be installed together.
        "task-decorators": [
            {"name": "kpo_async", "class-name": "kpo_async.decorators.kpo_async_task"},
            {"name": "kpo_async_cmd", "class-name": "kpo_async.decorators.kpo_async_cmd_task"},
        ],
    }
