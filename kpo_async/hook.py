"""The connection type kpo-async registers with Airflow.

It carries the same extras as the official ``kubernetes`` connection, and the operator reads
connections of either type, so existing ``kubernetes`` connections keep working unchanged.
"""

from __future__ import annotations

from typing import Any

from kpo_async.airflow_compat import BaseHook
from kpo_async.provider import CONNECTION_TYPE, HIDDEN_FIELDS


class KubernetesConnectionHook(BaseHook):
    """Describes the connection form; the operator resolves connections in `kpo_async.connection`."""

    conn_name_attr = "kubernetes_conn_id"
    default_conn_name = "kubernetes_default"
    conn_type = CONNECTION_TYPE
    hook_name = "Kubernetes Cluster (kpo-async)"

    def __init__(self, kubernetes_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kubernetes_conn_id = kubernetes_conn_id

    def get_conn(self) -> Any:
        return self.get_connection(self.kubernetes_conn_id)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {"hidden_fields": list(HIDDEN_FIELDS), "relabeling": {}}
