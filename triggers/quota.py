"""`QuotaTrigger`: waits on the triggerer until a namespace's ResourceQuota has room for a pod.

The operator defers to it when the API server refused the pod with "exceeded quota"; the event
sends the task back to a worker, which creates the pod (the spec, secrets included, never leaves
the worker). Its kwargs hold no secret: the quota's name and the quantities the pod asked for.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, NoReturn

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kpo_async.clients import ClusterClient, check_same_cluster, shared_client
from kpo_async.connection import ClusterRef
from kpo_async.quota import QuotaRefusal, wait_for_quota


class QuotaTrigger(BaseTrigger):
    """Fires ``{"quota_free": bool, ...}`` once the quota has room, or at `deadline` (epoch s).

    `waiting_since` (when the first create was refused) and `relaunch` (which relaunch of the try
    the pod will be) come back in the event.
    """

    def __init__(
        self,
        *,
        namespace: str,
        cluster: dict[str, Any],
        quota: str,
        requested: dict[str, str],
        deadline: float,
        waiting_since: float,
        relaunch: int = 0,
        cluster_fingerprint: dict[str, Any] | None = None,
        **from_another_version: NoReturn,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if from_another_version:  # stored by another version: a row must still resume
            self.log.warning("QuotaTrigger: ignoring unknown kwargs %s", sorted(from_another_version))
        self.namespace = namespace
        self.cluster = cluster
        self.refusal = QuotaRefusal(quota, dict(requested))
        self.deadline = deadline
        self.waiting_since = waiting_since
        self.relaunch = relaunch
        self.cluster_fingerprint = cluster_fingerprint

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return "triggers.quota.QuotaTrigger", {
            "namespace": self.namespace,
            "cluster": self.cluster,
            "quota": self.refusal.quota,
            "requested": self.refusal.requested,
            "deadline": self.deadline,
            "waiting_since": self.waiting_since,
            "relaunch": self.relaunch,
            "cluster_fingerprint": self.cluster_fingerprint,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = await shared_client(ClusterRef.from_dict(self.cluster))
        check_same_cluster(self.cluster_fingerprint, client, f"quota {self.namespace}/{self.refusal.quota}")
        yield TriggerEvent(await self.wait(client, self.log))  # type: ignore[no-untyped-call]

    async def wait(self, client: ClusterClient, logger: Any) -> dict[str, Any]:
        """Wait here, or on the worker of a task with ``deferrable=False``; the event's payload."""
        free = await wait_for_quota(client, self.namespace, self.refusal, self.deadline, logger)
        return {
            "quota_free": free,
            "quota": self.refusal.quota,
            "waited": round(time.time() - self.waiting_since, 1),
            "waiting_since": self.waiting_since,
            "relaunch": self.relaunch,
        }
