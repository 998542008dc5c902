"""Request counter by verb and resource (the audit log's vocabulary), plus connection gauges."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


def classify(method: str, path: str, query: dict[str, str] | Any) -> str:
    """'<verb> <resource>' like the audit log ('list pods', 'get pods/log', 'create pods/exec')."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3 or parts[0] != "api" or parts[1] != "v1":
        return f"{method.lower()} {path}"
    rest = parts[2:]
    watch = False
    if rest[0] == "watch":
        watch = True
        rest = rest[1:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return f"{method.lower()} {path}"
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub:
        resource = f"{resource}/{sub}"
    if sub in ("exec", "attach", "portforward"):
        return f"create {resource}"
    if method == "GET":
        if watch or str(query.get("watch", "")).lower() in ("true", "1"):
            verb = "watch"
        else:
            verb = "get" if name else "list"
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = method.lower()
    return f"{verb} {resource}"


class Stats:
    """Thread-safe counters; `snapshot()` is what the benchmark and tests read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.connections_opened = 0
        self.open_watches = 0
        self.open_log_streams = 0
        self.open_exec_sessions = 0
        #: Pods whose log was read with ``follow=true`` at least once (streamed, not polled).
        self.followed_pods: set[str] = set()

    def count(self, key: str) -> None:
        with self._lock:
            self.requests[key] += 1

    def connection(self) -> None:
        with self._lock:
            self.connections_opened += 1

    def followed(self, pod: str) -> None:
        with self._lock:
            self.followed_pods.add(pod)

    def gauge(self, name: str, delta: int) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "connections_opened": self.connections_opened,
                "open_watches": self.open_watches,
                "open_log_streams": self.open_log_streams,
                "open_exec_sessions": self.open_exec_sessions,
                "followed_pods": sorted(self.followed_pods),
            }

    def reset(self) -> None:
        """Zero the counters (gauges of open streams keep their current value)."""
        with self._lock:
            self.requests.clear()
            self.connections_opened = 0
            self.followed_pods.clear()
