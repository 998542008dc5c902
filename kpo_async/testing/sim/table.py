"""meta.k8s.io/v1 Table rendering (what `kubectl get` asks for) for pods, events, namespaces, nodes."""

from __future__ import annotations

import time
from typing import Any

from kpo_async.testing.sim.util import parse_rfc3339


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def age(ts: str | None, now: float | None = None) -> str:
    if not ts:
        return "<unknown>"
    try:
        secs = int((now or time.time()) - parse_rfc3339(ts))
    except ValueError:
        return "<unknown>"
    secs = max(secs, 0)
    if secs < 120:
        return f"{secs}s"
    mins = secs // 60
    if mins < 10:
        return f"{mins}m{secs % 60}s" if secs % 60 else f"{mins}m"
    if mins < 180:
        return f"{mins}m"
    hours = mins // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _col(
    name: str, type_: str = "string", priority: int = 0, fmt: str = "", desc: str = ""
) -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": desc or name, "priority": priority}


def pod_status_text(pod: dict[str, Any]) -> tuple[str, int, int, int]:
    """(STATUS, ready, total, restarts) the way kubectl's printPod computes them."""
    spec, status = pod.get("spec", {}), pod.get("status", {})
    reason = status.get("reason") or status.get("phase") or "Unknown"
    restarts = 0
    total = len(spec.get("containers") or [])
    ready = 0
    init_statuses = status.get("initContainerStatuses") or []
    initializing = False
    for i, cs in enumerate(init_statuses):
        restarts += cs.get("restartCount", 0)
        state = cs.get("state", {})
        term = state.get("terminated")
        if term and term.get("exitCode") == 0:
            continue
        if term:
            reason = "Init:" + (term.get("reason") or f"ExitCode:{term.get('exitCode')}")
        elif state.get("waiting", {}).get("reason") and state["waiting"]["reason"] != "PodInitializing":
            reason = "Init:" + state["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            state = cs.get("state", {})
            if state.get("waiting", {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif state.get("terminated"):
                term = state["terminated"]
                reason = term.get("reason") or (
                    f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}"
                )
            elif state.get("running") and cs.get("ready"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = (
                "Running"
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or []
                )
                else "NotReady"
            )
    if pod.get("metadata", {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason, ready, total, restarts


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def _node_status(node: dict[str, Any]) -> str:
    ready = next((c for c in node.get("status", {}).get("conditions") or [] if c.get("type") == "Ready"), {})
    return "Ready" if ready.get("status") == "True" else "NotReady"


def _quota_cells(quota: dict[str, Any]) -> list[str]:
    """kubectl's REQUEST and LIMIT columns: "pods: 1/2, requests.cpu: 400m/1"."""
    status = quota.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    requests, limits = [], []
    for key in sorted(hard):
        text = f"{key}: {used.get(key, '0')}/{hard[key]}"
        (limits if key.startswith("limits") else requests).append(text)
    return [", ".join(requests), ", ".join(limits)]


def _quota_table(objs: list[dict[str, Any]], now: float) -> tuple[list[dict[str, Any]], list[Any]]:
    cols = [_col("Name", fmt="name"), _col("Age"), _col("Request"), _col("Limit")]
    rows = [
        ([o["metadata"]["name"], age(o["metadata"].get("creationTimestamp"), now), *_quota_cells(o)], o)
        for o in objs
    ]
    return cols, rows


def _priority_class_table(objs: list[dict[str, Any]], now: float) -> tuple[list[dict[str, Any]], list[Any]]:
    cols = [
        _col("Name", fmt="name"),
        _col("Value", "integer"),
        _col("Global-Default", "boolean"),
        _col("Age"),
        _col("PreemptionPolicy"),
    ]
    rows = [
        (
            [
                o["metadata"]["name"],
                o.get("value", 0),
                bool(o.get("globalDefault")),
                age(o["metadata"].get("creationTimestamp"), now),
                o.get("preemptionPolicy", ""),
            ],
            o,
        )
        for o in objs
    ]
    return cols, rows


_EXTRA = {"resourcequotas": _quota_table, "priorityclasses": _priority_class_table}


def table(
    resource: str, objs: list[dict[str, Any]], rv: str, include_object: str = "Metadata"
) -> dict[str, Any]:
    now = time.time()
    rows = []
    if resource == "pods":
        cols = [
            _col("Name", fmt="name"),
            _col("Ready"),
            _col("Status"),
            _col("Restarts", "string"),
            _col("Age"),
            _col("IP", priority=1),
            _col("Node", priority=1),
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ]
        for o in objs:
            st, ready, total, restarts = pod_status_text(o)
            cells = [
                o["metadata"]["name"],
                f"{ready}/{total}",
                st,
                str(restarts),
                age(o["metadata"].get("creationTimestamp"), now),
                o.get("status", {}).get("podIP") or "<none>",
                o.get("spec", {}).get("nodeName") or "<none>",
                "<none>",
                "<none>",
            ]
            rows.append((cells, o))
    elif resource == "events":
        cols = [_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")]
        for o in objs:
            inv = o.get("involvedObject", {})
            cells = [
                age(o.get("lastTimestamp") or o.get("eventTime"), now),
                o.get("type", ""),
                o.get("reason", ""),
                f"{inv.get('kind', '').lower()}/{inv.get('name', '')}",
                o.get("message", ""),
            ]
            rows.append((cells, o))
    elif resource == "namespaces":
        cols = [_col("Name", fmt="name"), _col("Status"), _col("Age")]
        for o in objs:
            rows.append(
                (
                    [
                        o["metadata"]["name"],
                        o.get("status", {}).get("phase", ""),
                        age(o["metadata"].get("creationTimestamp"), now),
                    ],
                    o,
                )
            )
    elif resource == "nodes":
        cols = [_col("Name", fmt="name"), _col("Status"), _col("Roles"), _col("Age"), _col("Version")]
        for o in objs:
            rows.append(
                (
                    [
                        o["metadata"]["name"],
                        _node_status(o),
                        "<none>",
                        age(o["metadata"].get("creationTimestamp"), now),
                        "v1.32.0",
                    ],
                    o,
                )
            )
    elif resource in _EXTRA:
        cols, rows = _EXTRA[resource](objs, now)
    else:
        cols = [_col("Name", fmt="name"), _col("Age")]
        for o in objs:
            rows.append(([o["metadata"]["name"], age(o["metadata"].get("creationTimestamp"), now)], o))
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": cols,
        "rows": [
            {"cells": cells, "object": o if include_object == "Object" else _partial(o)} for cells, o in rows
        ],
    }
