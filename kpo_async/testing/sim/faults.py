"""Programmable faults: latency, error statuses, dropped connections, short or expired watches."""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from aiohttp import web


@dataclass
class Fault:
    """Applies to the next `times` requests matching method + path regex (+ query substring).

    Actions (combinable): `latency` seconds before answering; `latency_after` seconds between
    carrying the request out and answering it; `status` (e.g. 500, 503, 429 with
    `retry_after` seconds) answered with a real Status body; `drop_after_bytes` closes the TCP
    connection after that many bytes of the response body (works mid-stream for watch/logs);
    `watch_close_after` ends a watch stream cleanly after that many seconds; `watch_gone` sends a
    watch ERROR event with a 410 Expired Status and ends the stream.
    """

    method: str = "*"
    #: Regular expression searched in the request path.
    path: str = ".*"
    #: Case-insensitive substring of the raw query string (e.g. "watch=true").
    query: str | None = None
    #: How many matching requests it applies to; None = all of them until cleared.
    times: int | None = 1
    status: int | None = None
    retry_after: float | None = None
    message: str | None = None
    latency: float = 0.0
    latency_after: float = 0.0
    drop_after_bytes: int | None = None
    watch_close_after: float | None = None
    watch_gone: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    hits: int = 0

    def matches(self, method: str, path: str, query: str) -> bool:
        if self.method != "*" and method.upper() not in {m.strip().upper() for m in self.method.split(",")}:
            return False
        if not re.search(self.path, path):
            return False
        return self.query is None or self.query.lower() in query.lower()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        fault = cls(**{k: v for k, v in data.items() if k != "hits"})
        re.compile(fault.path)
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be >= 1 (or null for unlimited)")
        return fault


class FaultRegistry:
    """Thread-safe list of active faults (in-process API and the /sim/v1/faults endpoint)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> str:
        with self._lock:
            self._faults.append(fault)
        return fault.id

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str, query: str) -> Fault | None:
        """The first matching fault, consuming one of its `times`."""
        with self._lock:
            for f in self._faults:
                if f.matches(method, path, query):
                    f.hits += 1
                    if f.times is not None and f.hits >= f.times:
                        self._faults.remove(f)
                    return f
        return None


FAULT_KEY = web.RequestKey("sim_fault", Fault)
