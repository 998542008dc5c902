"""The object store: one global resourceVersion counter, a bounded watch history, watch fan-out.

Objects are kept serialized (the bytes a GET returns) next to the few values selectors need, so a
list of thousands of pods is a join of cached bytes and a watch event is encoded once for all
watchers.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kpo_async.testing.sim.selectors import FieldMatcher, LabelMatcher
from kpo_async.testing.sim.util import dumps


def _pod_fields(body: dict[str, Any]) -> dict[str, str]:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    return {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.restartPolicy": spec.get("restartPolicy", ""),
        "spec.schedulerName": spec.get("schedulerName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "spec.hostNetwork": str(bool(spec.get("hostNetwork", False))).lower(),
        "status.phase": status.get("phase", ""),
        "status.podIP": status.get("podIP", ""),
        "status.nominatedNodeName": status.get("nominatedNodeName", ""),
    }


def _event_fields(body: dict[str, Any]) -> dict[str, str]:
    meta, inv = body.get("metadata", {}), body.get("involvedObject", {})
    return {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "involvedObject.kind": inv.get("kind", ""),
        "involvedObject.namespace": inv.get("namespace", ""),
        "involvedObject.name": inv.get("name", ""),
        "involvedObject.uid": inv.get("uid", ""),
        "involvedObject.apiVersion": inv.get("apiVersion", ""),
        "involvedObject.resourceVersion": inv.get("resourceVersion", ""),
        "involvedObject.fieldPath": inv.get("fieldPath", ""),
        "reason": body.get("reason", ""),
        "reportingComponent": body.get("reportingComponent", ""),
        "source": body.get("source", {}).get("component", ""),
        "type": body.get("type", ""),
    }


def _ns_fields(body: dict[str, Any]) -> dict[str, str]:
    return {
        "metadata.name": body.get("metadata", {}).get("name", ""),
        "status.phase": body.get("status", {}).get("phase", ""),
    }


def _node_fields(body: dict[str, Any]) -> dict[str, str]:
    return {
        "metadata.name": body.get("metadata", {}).get("name", ""),
        "spec.unschedulable": str(bool(body.get("spec", {}).get("unschedulable", False))).lower(),
    }


@dataclass(frozen=True)
class Resource:
    name: str
    kind: str
    namespaced: bool
    fields: Callable[[dict[str, Any]], dict[str, str]]
    #: supported fieldSelector keys -> index in Obj.fields
    field_keys: dict[str, int]
    keep_body: bool = True
    api_version: str = "v1"

    @property
    def prefix(self) -> bytes:
        return f'{{"kind":"{self.kind}","apiVersion":"{self.api_version}",'.encode()


def _resource(
    name: str,
    kind: str,
    namespaced: bool,
    fields: Callable[..., dict[str, str]],
    keep: bool,
    api_version: str = "v1",
) -> Resource:
    return Resource(
        name, kind, namespaced, fields, {k: i for i, k in enumerate(fields({}))}, keep, api_version
    )


def _meta_fields(body: dict[str, Any]) -> dict[str, str]:
    meta = body.get("metadata", {})
    return {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}


def _secret_fields(body: dict[str, Any]) -> dict[str, str]:
    return {**_meta_fields(body), "type": body.get("type", "")}


RESOURCES: dict[str, Resource] = {
    "pods": _resource("pods", "Pod", True, _pod_fields, True),
    "events": _resource("events", "Event", True, _event_fields, False),
    "namespaces": _resource("namespaces", "Namespace", False, _ns_fields, True),
    "nodes": _resource("nodes", "Node", False, _node_fields, True),
    "secrets": _resource("secrets", "Secret", True, _secret_fields, True),
    "configmaps": _resource("configmaps", "ConfigMap", True, _meta_fields, True),
    "persistentvolumeclaims": _resource(
        "persistentvolumeclaims", "PersistentVolumeClaim", True, _meta_fields, True
    ),
    "serviceaccounts": _resource("serviceaccounts", "ServiceAccount", True, _meta_fields, True),
    "resourcequotas": _resource("resourcequotas", "ResourceQuota", True, _meta_fields, True),
    "priorityclasses": _resource(
        "priorityclasses", "PriorityClass", False, _meta_fields, True, "scheduling.k8s.io/v1"
    ),
}


_NO_LABELS: dict[str, str] = {}


class Obj:
    """One stored version of an object."""

    __slots__ = ("body", "fields", "labels", "name", "ns", "raw", "resource", "rv")

    def __init__(self, resource: Resource, body: dict[str, Any], rv: int) -> None:
        meta = body["metadata"]
        self.resource = resource
        self.ns: str = meta.get("namespace", "") if resource.namespaced else ""
        self.name: str = meta["name"]
        self.rv = rv
        # label dicts are replaced, never mutated, by PATCH/PUT: share them
        self.labels: dict[str, str] = meta.get("labels") or _NO_LABELS
        self.fields: tuple[str, ...] = tuple(resource.fields(body).values())
        self.raw = dumps({k: v for k, v in body.items() if k not in ("kind", "apiVersion")})
        self.body: dict[str, Any] | None = body if resource.keep_body else None

    def full(self) -> bytes:
        """The object as GET returns it (with kind and apiVersion)."""
        if self.raw == b"{}":
            return self.resource.prefix[:-1] + b"}"
        return self.resource.prefix + self.raw[1:]

    def item(self) -> bytes:
        """The object as a list item (the apiserver omits kind/apiVersion there)."""
        return self.raw


class WatchEvent:
    __slots__ = ("_line", "obj", "prev", "rv", "type")

    def __init__(self, rv: int, type_: str, obj: Obj, prev: Obj | None) -> None:
        self.rv = rv
        self.type = type_
        self.obj = obj
        self.prev = prev
        self._line: bytes | None = None

    def line(self) -> bytes:
        if self._line is None:
            self._line = event_line(self.type, self.obj)
        return self._line


def event_line(type_: str, obj: Obj) -> bytes:
    return b'{"type":"' + type_.encode() + b'","object":' + obj.full() + b"}\n"


class Gone(Exception):
    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


#: What a watcher receives: (type, object) or a sentinel string "overflow".
Delivery = tuple[str, Obj] | str


class Watcher:
    def __init__(
        self,
        store: Store,
        resource: Resource,
        ns: str | None,
        label_match: LabelMatcher | None,
        field_match: FieldMatcher | None,
        limit: int,
    ) -> None:
        self.store = store
        self.resource = resource
        self.ns = ns
        self.label_match = label_match
        self.field_match = field_match
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self.limit = limit
        self.closed = False

    def matches(self, obj: Obj) -> bool:
        if self.ns is not None and obj.ns != self.ns:
            return False
        if self.label_match is not None and not self.label_match(obj.labels):
            return False
        return self.field_match is None or self.field_match(obj.fields)

    def offer(self, ev: WatchEvent) -> None:
        if self.closed:
            return
        now = self.matches(ev.obj)
        if ev.type == "MODIFIED" and ev.prev is not None and (self.label_match or self.field_match):
            before = self.matches(ev.prev)
            if now and not before:
                self._put(("ADDED", ev.obj))
            elif before and not now:
                self._put(("DELETED", ev.obj))
            elif now:
                self._put(ev)
        elif now:
            self._put(ev)

    def _put(self, item: Any) -> None:
        if self.queue.qsize() >= self.limit:
            self.closed = True
            self.queue.put_nowait("overflow")
            return
        self.queue.put_nowait(item)

    def close(self) -> None:
        self.closed = True
        self.store.unwatch(self)


class Store:
    def __init__(self, history_limit: int = 10000, watch_queue_limit: int = 100000) -> None:
        self.rv = 1
        self.objects: dict[str, dict[str, dict[str, Obj]]] = {r: {} for r in RESOURCES}
        self.history: deque[WatchEvent] = deque()
        self.history_limit = history_limit
        #: Watches can resume from any rv >= floor (every later event is still in history).
        self.history_floor = 1
        self.watchers: dict[str, set[Watcher]] = {r: set() for r in RESOURCES}
        self.watch_queue_limit = watch_queue_limit
        #: Controllers (quota) that react to every change, after the watchers got it.
        self.listeners: list[Callable[[WatchEvent], None]] = []

    # --- reads ---
    def get(self, resource: str, ns: str, name: str) -> Obj | None:
        return self.objects[resource].get(ns, {}).get(name)

    def list(self, resource: str, ns: str | None = None) -> list[Obj]:
        by_ns = self.objects[resource]
        if ns is not None:
            items = by_ns.get(ns, {})
            return [items[k] for k in sorted(items)]
        return [by_ns[n][k] for n in sorted(by_ns) for k in sorted(by_ns[n])]

    def count(self, resource: str) -> int:
        return sum(len(v) for v in self.objects[resource].values())

    # --- writes ---
    def _stamp(self, body: dict[str, Any]) -> int:
        self.rv += 1
        body["metadata"]["resourceVersion"] = str(self.rv)
        return self.rv

    def create(self, resource: str, body: dict[str, Any]) -> Obj:
        res = RESOURCES[resource]
        rv = self._stamp(body)
        obj = Obj(res, body, rv)
        self.objects[resource].setdefault(obj.ns, {})[obj.name] = obj
        self._emit(WatchEvent(rv, "ADDED", obj, None))
        return obj

    def update(self, resource: str, body: dict[str, Any]) -> Obj:
        res = RESOURCES[resource]
        meta = body["metadata"]
        ns = meta.get("namespace", "") if res.namespaced else ""
        prev = self.get(resource, ns, meta["name"])
        if prev is None:
            raise KeyError(meta["name"])
        rv = self._stamp(body)
        obj = Obj(res, body, rv)
        self.objects[resource][ns][obj.name] = obj
        self._emit(WatchEvent(rv, "MODIFIED", obj, prev))
        return obj

    def delete(self, resource: str, ns: str, name: str, final: dict[str, Any] | None = None) -> Obj | None:
        """Remove the object; the DELETED event carries `final` (or the last body) at a new rv."""
        res = RESOURCES[resource]
        items = self.objects[resource].get(ns, {})
        prev = items.pop(name, None)
        if prev is None:
            return None
        if not items:
            self.objects[resource].pop(ns, None)
        body = final if final is not None else (prev.body if prev.body is not None else _loads(prev.raw))
        rv = self._stamp(body)
        obj = Obj(res, body, rv)
        self._emit(WatchEvent(rv, "DELETED", obj, prev))
        return obj

    def _emit(self, ev: WatchEvent) -> None:
        self.history.append(ev)
        while len(self.history) > self.history_limit:
            self.history_floor = self.history.popleft().rv
        for w in tuple(self.watchers[ev.obj.resource.name]):
            w.offer(ev)
        for listener in self.listeners:
            listener(ev)

    # --- watch ---
    def watch(
        self,
        resource: str,
        ns: str | None,
        label_match: LabelMatcher | None,
        field_match: FieldMatcher | None,
        since_rv: int | None,
    ) -> Watcher:
        """Register a watcher. since_rv None/0: synthetic ADDED for the current state first."""
        res = RESOURCES[resource]
        w = Watcher(self, res, ns, label_match, field_match, self.watch_queue_limit)
        if since_rv:
            if since_rv < self.history_floor:
                # like the watch cache: the number is the oldest rv one can still resume from
                raise Gone(since_rv, self.history_floor)
            for ev in self._events_after(since_rv):
                if ev.obj.resource is res:
                    w.offer(ev)
        else:
            for obj in self.list(resource, ns):
                if w.matches(obj):
                    w.queue.put_nowait(("ADDED", obj))
        self.watchers[resource].add(w)
        return w

    def _events_after(self, rv: int) -> Iterable[WatchEvent]:
        if not self.history or self.history[-1].rv <= rv:
            return ()
        # history is sorted by rv; skip from the left side quickly when the gap is big
        lo, hi = 0, len(self.history)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.history[mid].rv <= rv:
                lo = mid + 1
            else:
                hi = mid
        return list(itertools.islice(self.history, lo, None))

    def unwatch(self, w: Watcher) -> None:
        self.watchers[w.resource.name].discard(w)

    def open_watch_count(self) -> int:
        return sum(len(v) for v in self.watchers.values())


def _loads(raw: bytes) -> dict[str, Any]:
    import json

    return json.loads(raw)
