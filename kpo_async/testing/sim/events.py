"""core/v1 Events emitted by the simulated scheduler and kubelet (aggregated like the real ones)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from kpo_async.testing.sim.store import Store
from kpo_async.testing.sim.util import fmt_micro, fmt_time, new_uid

_SCHEDULER_ACTIONS = {"Scheduled": "Scheduling", "FailedScheduling": "Scheduling", "Preempted": "Preempting"}
_AGGREGATE_WINDOW = 600.0  # the event correlator aggregates identical events within 10 minutes


class EventRecorder:
    def __init__(self, store: Store, node_name: str, ttl: float) -> None:
        self.store = store
        self.node_name = node_name
        self.ttl = ttl
        #: aggregation key -> [event name, count, first timestamp, last time]
        self._recent: dict[tuple[str, ...], list[Any]] = {}
        self._order: deque[tuple[float, str, str, tuple[str, ...]]] = deque()

    def record(
        self,
        pod: dict[str, Any],
        reason: str,
        message: str,
        type_: str = "Normal",
        field_path: str | None = None,
        component: str = "kubelet",
    ) -> None:
        meta = pod["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta.get("uid", "")
        key = (ns, name, uid, reason, message, field_path or "", component, type_)
        now = time.time()
        involved: dict[str, Any] = {
            "kind": "Pod",
            "namespace": ns,
            "name": name,
            "uid": uid,
            "apiVersion": "v1",
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if field_path:
            involved["fieldPath"] = field_path
        entry = self._recent.get(key)
        if (
            entry is not None
            and now - entry[3] < _AGGREGATE_WINDOW
            and self.store.get("events", ns, entry[0])
        ):
            entry[1] += 1
            entry[3] = now
            body = self._body(
                ns, entry[0], involved, reason, message, type_, component, entry[2], now, entry[1]
            )
            body["metadata"]["uid"] = entry[4]
            body["metadata"]["creationTimestamp"] = fmt_time(entry[2])
            self.store.update("events", body)
            return
        ev_name = f"{name}.{time.time_ns():x}"
        while self.store.get("events", ns, ev_name) is not None:
            ev_name = f"{name}.{time.time_ns() + 1:x}"
        body = self._body(ns, ev_name, involved, reason, message, type_, component, now, now, 1)
        self.store.create("events", body)
        self._recent[key] = [ev_name, 1, now, now, body["metadata"]["uid"]]
        self._order.append((now, ns, ev_name, key))
        self.expire(now)

    def _body(
        self,
        ns: str,
        name: str,
        involved: dict[str, Any],
        reason: str,
        message: str,
        type_: str,
        component: str,
        first: float,
        last: float,
        count: int,
    ) -> dict[str, Any]:
        source: dict[str, str] = {"component": component}
        if component == "kubelet":
            source["host"] = self.node_name
        body: dict[str, Any] = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": new_uid(),
                "creationTimestamp": fmt_time(first),
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": fmt_time(first),
            "lastTimestamp": fmt_time(last),
            "count": count,
            "type": type_,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": self.node_name
            if component == "kubelet"
            else f"{component}-{self.node_name}",
        }
        if component == "default-scheduler":  # events.k8s.io/v1 recorder: eventTime and action
            body["eventTime"] = fmt_micro(first)
            body["action"] = _SCHEDULER_ACTIONS.get(reason, reason)
        elif component != "kubelet":  # the controller manager's core/v1 recorder
            body["reportingInstance"] = ""
        return body

    def expire(self, now: float | None = None) -> None:
        """Delete events older than the TTL (the apiserver's --event-ttl)."""
        now = time.time() if now is None else now
        while self._order and now - self._order[0][0] > self.ttl:
            _, ns, name, key = self._order.popleft()
            entry = self._recent.get(key)
            if entry is not None and entry[0] == name:
                del self._recent[key]
            self.store.delete("events", ns, name)
