"""ResourceQuota: the quota admission plugin (pod create) and the resourcequota controller (status).

The controller's job is done synchronously on every pod or quota change of a namespace that has
quotas (a store listener), so `status.used` is current when the next pod is admitted, as the real
admission plugin's own status write makes it. Only the pod evaluator's resources are counted:
`pods`, `count/pods`, `cpu`, `memory`, `ephemeral-storage`, `requests.<name>`, `limits.<name>`.
Scopes and scope selectors are not supported (every quota applies to every pod).
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from typing import Any

from kpo_async.testing.sim.errors import ApiError, Cause, bad_request
from kpo_async.testing.sim.store import Store, WatchEvent
from kpo_async.testing.sim.util import parse_quantity, parse_rfc3339

#: One amount and whether it prints with a binary suffix (Ki, Mi...), as resource.Quantity keeps it.
Amount = tuple[Fraction, bool]
Usage = dict[str, Amount]

#: Resources whose quota makes every container state them (the "backward compatibility" rule).
_MUST_SPECIFY = {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
_BARE = ("cpu", "memory", "ephemeral-storage")
_DEC_SUFFIX = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_BIN_SUFFIX = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]


def amount(value: Any) -> Amount:
    text = str(value).strip()
    return parse_quantity(value), text.endswith("i")


def format_quantity(value: Fraction, binary: bool = False) -> str:
    """resource.Quantity's canonical string: "400m", "1", "2k", "1536Mi", "1500M"."""
    if value == 0:
        return "0"
    if binary and abs(value) >= 1024 and value.denominator == 1:
        n, k = int(value), 0
        while k < len(_BIN_SUFFIX) - 1 and n % 1024 == 0:
            n, k = n // 1024, k + 1
        return f"{n}{_BIN_SUFFIX[k]}"
    nanos = value * 10**9
    scaled = -(-nanos.numerator // nanos.denominator)  # rounded up to a nano, like the apiserver
    exp = -9
    while exp < 18 and scaled % 1000 == 0:
        scaled, exp = scaled // 1000, exp + 3
    return f"{scaled}{_DEC_SUFFIX[exp]}"


def _add(total: Usage, key: str, value: Amount) -> None:
    old = total.get(key)
    total[key] = value if old is None else (old[0] + value[0], old[1])


def _container_usage(container: dict[str, Any]) -> Usage:
    res = container.get("resources") or {}
    out: Usage = {}
    for name, value in (res.get("requests") or {}).items():
        out[f"requests.{name}"] = amount(value)
        if name in _BARE:
            out[name] = amount(value)
    for name, value in (res.get("limits") or {}).items():
        if name in _BARE:
            out[f"limits.{name}"] = amount(value)
    return out


def pod_usage(pod: dict[str, Any]) -> Usage:
    """What one pod uses: the sum over containers, at least any init container's, one `pods`."""
    spec = pod.get("spec") or {}
    total: Usage = {"pods": (Fraction(1), False), "count/pods": (Fraction(1), False)}
    for c in spec.get("containers") or []:
        for key, value in _container_usage(c).items():
            _add(total, key, value)
    for c in spec.get("initContainers") or []:
        for key, value in _container_usage(c).items():
            if key not in total or total[key][0] < value[0]:
                total[key] = value
    return total


def counts_pod(pod: dict[str, Any], now: float) -> bool:
    """The quota evaluator's rule: terminal pods and pods past deletion + grace are not charged."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    release = _release_time(pod)
    return release is None or now <= release


def _release_time(pod: dict[str, Any]) -> float | None:
    meta = pod.get("metadata") or {}
    if not meta.get("deletionTimestamp") or meta.get("deletionGracePeriodSeconds") is None:
        return None
    return parse_rfc3339(meta["deletionTimestamp"]) + float(meta["deletionGracePeriodSeconds"])


def _tracked(key: str) -> bool:
    """A resource the pod evaluator counts (`requests.storage` is the PVCs', not counted here)."""
    if key == "requests.storage":
        return False
    return key in ("pods", "count/pods", *_BARE) or key.startswith(("requests.", "limits."))


def hard_of(quota: dict[str, Any]) -> dict[str, str]:
    return {k: format_quantity(*amount(v)) for k, v in ((quota.get("spec") or {}).get("hard") or {}).items()}


def _pretty(values: dict[str, str]) -> str:
    return ",".join(f"{k}={values[k]}" for k in sorted(values))


def _forbidden(name: str, message: str) -> ApiError:
    return ApiError(
        403, f'pods "{name}" is forbidden: {message}', "Forbidden", {"name": name, "kind": "pods"}
    )


def _missing(pod: dict[str, Any], required: set[str]) -> str | None:
    """kube-apiserver's "must specify ..." for containers that do not state a limited resource."""
    spec = pod.get("spec") or {}
    missing: dict[str, set[str]] = {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for key in required - set(_container_usage(c)):
            missing.setdefault(key, set()).add(c["name"])
    if not missing:
        return None
    parts = [f"{key} for: {','.join(sorted(missing[key]))}" for key in sorted(missing)]
    return "must specify " + "; ".join(parts)


def admit(store: Store, pod: dict[str, Any], ns: str) -> None:
    """The ResourceQuota admission plugin on pod create: 403 when a quota would be exceeded."""
    name = pod["metadata"]["name"]
    usage = pod_usage(pod)
    for obj in store.list("resourcequotas", ns):
        quota = obj.body
        assert quota is not None
        hard = hard_of(quota)
        limited = {k for k in hard if _tracked(k)}
        if not limited:
            continue
        missing = _missing(pod, limited & _MUST_SPECIFY)
        if missing:
            raise _forbidden(name, f"failed quota: {obj.name}: {missing}")
        used = (quota.get("status") or {}).get("used") or {}
        exceeded = [
            k
            for k in sorted(limited & set(usage))
            if parse_quantity(used.get(k, "0")) + usage[k][0] > parse_quantity(hard[k])
        ]
        if exceeded:
            raise _forbidden(
                name,
                f"exceeded quota: {obj.name}, "
                f"requested: {_pretty({k: format_quantity(*usage[k]) for k in exceeded})}, "
                f"used: {_pretty({k: used.get(k, '0') for k in exceeded})}, "
                f"limited: {_pretty({k: hard[k] for k in exceeded})}",
            )


def validate_hard(body: dict[str, Any], causes: list[Cause]) -> None:
    """spec.hard must hold valid non-negative quantities; they are stored in canonical form."""
    hard = (body.get("spec") or {}).get("hard") or {}
    for key, value in hard.items():
        try:
            parsed = parse_quantity(value)
        except ValueError as e:  # the decoder refuses it before validation, as for any Quantity
            raise bad_request(
                'ResourceQuota in version "v1" cannot be handled as a ResourceQuota: quantities must '
                "match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            ) from e
        if parsed < 0:
            causes.append(
                Cause(
                    f"spec.hard[{key}]",
                    "FieldValueInvalid",
                    f'Invalid value: "{value}": must be greater than or equal to 0',
                )
            )
            continue
        hard[key] = format_quantity(*amount(value))


class QuotaController:
    """Keeps every ResourceQuota's `status.hard`/`status.used` in step with the namespace's pods."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._timers: dict[str, asyncio.TimerHandle] = {}
        store.listeners.append(self.on_event)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def on_event(self, ev: WatchEvent) -> None:
        if ev.obj.resource.name in ("pods", "resourcequotas") and ev.obj.ns:
            if ev.type != "DELETED" or ev.obj.resource.name == "pods":
                self.sync(ev.obj.ns)

    def sync(self, ns: str) -> None:
        quotas = self.store.list("resourcequotas", ns)
        if not quotas:
            return
        now = time.time()
        total: Usage = {}
        next_release: float | None = None
        for obj in self.store.list("pods", ns):
            pod = obj.body
            assert pod is not None
            if not counts_pod(pod, now):
                continue
            release = _release_time(pod)
            if release is not None:
                next_release = release if next_release is None else min(next_release, release)
            for key, value in pod_usage(pod).items():
                _add(total, key, value)
        for obj in quotas:
            self._write(obj.body, total)
        if next_release is not None:
            self._recheck(ns, next_release - now + 0.05)

    def _write(self, quota: dict[str, Any] | None, total: Usage) -> None:
        assert quota is not None
        hard = hard_of(quota)
        used = {k: format_quantity(*total[k]) if k in total else "0" for k in hard if _tracked(k)}
        status = {"hard": hard, "used": used}
        if quota.get("status") != status:
            quota["status"] = status
            self.store.update("resourcequotas", quota)

    def _recheck(self, ns: str, delay: float) -> None:
        """A terminating pod stops counting at deletion + grace: look again then."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        old = self._timers.pop(ns, None)
        if old is not None:
            old.cancel()
        self._timers[ns] = loop.call_later(max(delay, 0.0), self.sync, ns)
