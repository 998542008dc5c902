"""Wait until a namespace's ResourceQuota has room for a pod it refused.

kube-apiserver's quota admission refuses a pod with 403 ``exceeded quota: <name>, requested: ...,
used: ..., limited: ...``. We read that quota's status (kept by kube-controller-manager) until
`used + requested <= hard` for every resource the pod asked for; the create is then tried again.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kpo_async import api
from kpo_async.clients import ClusterClient
from kpo_async.errors import Forbidden, NotFound
from kpo_async.retry import describe

_REFUSAL = re.compile(r"exceeded quota: (?P<quota>[^,]+), requested: (?P<requested>\S+),")
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIXES = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10**3), "M": Decimal(10**6)}
_SUFFIXES |= {"G": Decimal(10**9), "T": Decimal(10**12), "Ki": Decimal(2**10), "Mi": Decimal(2**20)}
_SUFFIXES |= {"Gi": Decimal(2**30), "Ti": Decimal(2**40)}
#: Without the right to read the quota, the create is simply tried again this often.
BLIND_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class QuotaRefusal:
    """Which quota refused the pod, and what the pod asked of it (resource -> quantity)."""

    quota: str
    requested: dict[str, str]

    @classmethod
    def parse(cls, message: str) -> QuotaRefusal:
        found = _REFUSAL.search(message)
        if found is None:  # another wording: wait on no quota in particular
            return cls("", {})
        pairs = (item.split("=", 1) for item in found["requested"].split(","))
        return cls(found["quota"], {key: value for key, value in pairs})


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``500m``, ``2``, ``1Gi``) as a number."""
    found = _QUANTITY.match(text.strip())
    if found is None or found[2] not in _SUFFIXES:
        raise ValueError(f"not a quantity: {text!r}")
    return Decimal(found[1]) * _SUFFIXES[found[2]]


def shortfall(refusal: QuotaRefusal, status: dict[str, Any]) -> list[str]:
    """The resources the quota still lacks room for, as ``requests.cpu used 3/4, this pod asks 2``."""
    hard, used = status.get("hard") or {}, status.get("used") or {}
    short = []
    for resource, asked in refusal.requested.items():
        if resource in hard and quantity(used.get(resource, "0")) + quantity(asked) > quantity(
            hard[resource]
        ):
            short.append(f"{resource} used {used.get(resource, '0')}/{hard[resource]}, this pod asks {asked}")
    return short


async def wait_for_quota(
    client: ClusterClient, namespace: str, refusal: QuotaRefusal, deadline: float, log: Any
) -> bool:
    """Poll the quota until it has room for the pod (True) or `deadline` passes (False). What is
    short is logged when it changes, not on every poll."""
    said, delay = "", 1.0
    while time.time() < deadline:
        try:
            quota = await api.call(
                lambda: client.core.read_namespaced_resource_quota(
                    refusal.quota, namespace, _preload_content=False
                ),
                what=f"reading quota {namespace}/{refusal.quota}",
                verb="get",
                resource="resourcequotas",
            )
        except NotFound:  # removed, or a refusal we could not parse: try the create again
            return True
        except Forbidden as exc:
            log.warning("%s; trying to create the pod every %g s instead", describe(exc), BLIND_RETRY_SECONDS)
            await asyncio.sleep(max(0.0, min(BLIND_RETRY_SECONDS, deadline - time.time())))
            return time.time() < deadline
        short = shortfall(refusal, quota.get("status") or {})
        if not short:
            return True
        if "; ".join(short) != said:
            said = "; ".join(short)
            log.info("namespace quota %s/%s: %s; waiting", namespace, refusal.quota, said)
        await asyncio.sleep(max(0.0, min(delay, deadline - time.time())))
        delay = min(delay * 2, 10.0)
    return False
