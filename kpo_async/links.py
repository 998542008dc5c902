"""Extra link from a task to its pod, when a dashboard URL template is configured.

Set ``[kpo_async] pod_url_template`` (docs/settings.md), e.g.
``https://dashboard.example/#/pod/{namespace}/{pod}?namespace={namespace}``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.bases.xcom import BaseXCom

from kpo_async.settings import setting

#: XCom keys under which the operator records which pod it runs (the official operator's names).
POD_NAME_XCOM = "pod_name"
POD_NAMESPACE_XCOM = "pod_namespace"


class PodLink(BaseOperatorLink):
    name = "Kubernetes Pod"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        template: str = setting("pod_url_template")
        name = template and BaseXCom.get_value(ti_key=ti_key, key=POD_NAME_XCOM)
        if not name:  # no dashboard configured, or no pod recorded yet
            return ""
        namespace = BaseXCom.get_value(ti_key=ti_key, key=POD_NAMESPACE_XCOM)
        return template.format(namespace=namespace or "", pod=name)
