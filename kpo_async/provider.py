"""What Airflow's providers manager learns about kpo-async (entry point `apache_airflow_provider`)."""

from __future__ import annotations

from typing import Any

from kpo_async import __version__
from kpo_async.identity import CONNECTION_EXTRAS  # provider discovery must not import Airflow

CONNECTION_TYPE = "kpo_async_kubernetes"

#: Connection fields Airflow's form hides: the cluster is described by the extras alone.
HIDDEN_FIELDS = ("host", "schema", "login", "password", "port", "extra")
_TEXT: dict[str, Any] = {"type": ["string", "null"]}
_FLAG: dict[str, Any] = {"type": ["boolean", "null"]}
#: The form's fields: the official `kubernetes` connection's extras (CONNECTION_EXTRAS' order).
_CONN_FIELDS: dict[str, dict[str, Any]] = {
    "in_cluster": {"label": "In cluster configuration", "schema": _FLAG},
    "kube_config_path": {"label": "Kube config path (must exist on workers and triggerer)", "schema": _TEXT},
    "kube_config": {
        "label": "Kube config (JSON or YAML, stored encrypted)",
        "schema": {**_TEXT, "format": "password"},
    },
    "namespace": {"label": "Namespace", "schema": _TEXT},
    "cluster_context": {"label": "Cluster context", "schema": _TEXT},
    "disable_verify_ssl": {"label": "Disable SSL verification", "schema": _FLAG},
    "xcom_sidecar_container_image": {"label": "XCom sidecar image", "schema": _TEXT},
    "xcom_sidecar_container_resources": {"label": "XCom sidecar resources (JSON)", "schema": _TEXT},
}


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
                "conn-fields": {name: _CONN_FIELDS[name] for name in CONNECTION_EXTRAS},
                "ui-field-behaviour": {"hidden-fields": list(HIDDEN_FIELDS)},
            }
        ],
        "extra-links": ["kpo_async.links.PodLink"],
        # Not the official "kubernetes"/"kubernetes_cmd": both providers can be installed together.
        "task-decorators": [
            {"name": "kpo_async", "class-name": "kpo_async.decorators.kpo_async_task"},
            {"name": "kpo_async_cmd", "class-name": "kpo_async.decorators.kpo_async_cmd_task"},
        ],
    }
