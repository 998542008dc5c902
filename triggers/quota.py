"""`QuotaTrigger`: waits on the triggerer until a namespace's ResourceQuota has room for a pod.

The operator defers to it when the API server refused the pod with 403 ``exceeded quota: <name>,
requested: ..., used: ..., limited: ...``; the trigger reads that quota's status (kept by
kube-controller-manager) until `used + requested <= hard` for every resource the pod asked for.
The event sends the task back to a worker, which creates the pod (the spec, secrets included, never
leaves the worker). Its kwargs hold no secret: the quota's name and the quantities the pod asked for.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, NoReturn

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kpo_async import api
from kpo_async.clients import ClusterClient, check_same_cluster, shared_client
from kpo_async.connection import ClusterRef
from kpo_async.errors import NotFound

_REFUSAL = re.compile(r"exceeded quota: (?P<quota>[^,]+), requested: (?P<requested>\S+),")
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIXES = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10**3), "M": Decimal(10**6)}
_SUFFIXES |= {"G": Decimal(10**9), "T": Decimal(10**12), "Ki": Decimal(2**10), "Mi": Decimal(2**20)}
_SUFFIXES |= {"Gi": Decimal(2**30), "Ti": Decimal(2**40)}
#: A refusal worded otherwise names no quota to read: the create is simply tried again this often.
BLIND_RETRY_SECONDS = 30.0
#: The kwargs `serialize` stores: each is the attribute of that name.
_KWARGS = ("namespace", "cluster", "refusal", "deadline", "waiting_since", "relaunch", "cluster_fingerprint")


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``500m``, ``2``, ``1Gi``) as a number."""
    found = _QUANTITY.match(text.strip())
    if found is None or found[2] not in _SUFFIXES:
        raise ValueError(f"not a quantity: {text!r}")
    return Decimal(found[1]) * _SUFFIXES[found[2]]


class QuotaTrigger(BaseTrigger):
    """Fires ``{"quota_free": bool, ...}`` once the quota named in `refusal` (the API server's
    message) has room for what the pod asked, or at `deadline` (epoch s).

    `waiting_since` (when the first create was refused) and `relaunch` (which relaunch of the try
    the pod will be) come back in the event.
    """

    def __init__(
        self,
        *,
        namespace: str,
        cluster: dict[str, Any],
        refusal: str,
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
        self.refusal = refusal
        self.deadline = deadline
        self.waiting_since = waiting_since
        self.relaunch = relaunch
        self.cluster_fingerprint = cluster_fingerprint
        found = _REFUSAL.search(refusal)
        self.quota = found["quota"] if found else ""
        self.requested = dict(item.split("=", 1) for item in found["requested"].split(",")) if found else {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return "triggers.quota.QuotaTrigger", {name: getattr(self, name) for name in _KWARGS}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = await shared_client(ClusterRef.from_dict(self.cluster))
        check_same_cluster(self.cluster_fingerprint, client, f"quota {self.namespace}/{self.quota}")
        yield TriggerEvent(await self.wait(client, self.log))  # type: ignore[no-untyped-call]

    async def wait(self, client: ClusterClient, logger: Any) -> dict[str, Any]:
        """Wait here, or on the worker of a task with ``deferrable=False``; the event's payload."""
        return {
            "quota_free": await self._wait_for_room(client, logger),
            "quota": self.quota,
            "waited": round(time.time() - self.waiting_since, 1),
            "waiting_since": self.waiting_since,
            "relaunch": self.relaunch,
        }

    async def _wait_for_room(self, client: ClusterClient, log: Any) -> bool:
        """Poll the quota until it has room for the pod (True) or the deadline passes (False). What
        is short is logged when it changes, not on every poll."""
        said, delay = "", 1.0
        if not self.quota:  # a refusal worded otherwise: no quota to read, the create is tried again later
            await asyncio.sleep(max(0.0, min(BLIND_RETRY_SECONDS, self.deadline - time.time())))
            return time.time() < self.deadline
        while time.time() < self.deadline:
            try:
                quota = await api.call(
                    lambda: client.core.read_namespaced_resource_quota(
                        self.quota, self.namespace, _preload_content=False
                    ),
                    what=f"reading quota {self.namespace}/{self.quota}",
                    verb="get",
                    resource="resourcequotas",
                )
            except NotFound:  # removed meanwhile: try the create again
                return True
            if not (short := self._shortfall(quota.get("status") or {})):
                return True
            if "; ".join(short) != said:
                said = "; ".join(short)
                log.info("namespace quota %s/%s: %s; waiting", self.namespace, self.quota, said)
            await asyncio.sleep(max(0.0, min(delay, self.deadline - time.time())))
            delay = min(delay * 2, 10.0)
        return False

    def _shortfall(self, status: dict[str, Any]) -> list[str]:
        """What the quota still lacks room for, as ``requests.cpu used 3/4, this pod asks 2``."""
        hard, used = status.get("hard") or {}, status.get("used") or {}
        return [
            f"{resource} used {used.get(resource, '0')}/{hard[resource]}, this pod asks {asked}"
            for resource, asked in self.requested.items()
            if resource in hard
            and quantity(used.get(resource, "0")) + quantity(asked) > quantity(hard[resource])
        ]
