"""What a pod's run came to: the trigger's one event, written and read here only.

The payload is the JSON dict the triggerer stores and hands to ``execute_complete``. Its shape is
the one every earlier version wrote, so an event stored before an upgrade still resumes: keys an
older writer left out (its error branch wrote no ``exit_code``, ``xcom`` or ``log_tail``) take
their defaults, keys a newer writer adds are ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


class Status(str, enum.Enum):
    SUCCESS = "success"
    #: The pod ran and did not succeed (non-zero exit, failed init container, unpullable image).
    FAILED = "failed"
    #: The pod could not be followed to its end (deleted, XCom unreadable, trigger crashed).
    ERROR = "error"
    #: A startup or execution deadline passed.
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class PodOutcome:
    status: Status
    namespace: str
    pod_name: str
    pod_uid: str | None = None
    phase: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str = ""
    #: The XCom value (a failed pod's too, as the official operator pushes it).
    xcom: Any = None
    #: The last log lines, for the failure message (failures only).
    log_tail: tuple[str, ...] = ()
    log_cursor: str | None = None
    #: How the cluster took the pod away (a `kpo_async.pod_state.DISRUPTIONS` key), if it did, and
    #: whether its base container had started by then.
    disruption: str | None = None
    started: bool = False
    #: Which relaunch of its try a disrupted pod was (0: the first pod), and where the pod's time went.
    relaunch: int = 0
    timeline: dict[str, int] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status is Status.SUCCESS

    def failure_message(self) -> str:
        """What the failed task says: why, then the last log lines."""
        message = self.message or f"pod {self.namespace}/{self.pod_name} did not succeed"
        return message + ("\nLast log lines:\n" + "\n".join(self.log_tail) if self.log_tail else "")

    def to_payload(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value, "log_tail": list(self.log_tail)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PodOutcome:
        values = {f.name: payload[f.name] for f in fields(cls) if f.name in payload}
        values["status"] = Status(payload.get("status", Status.ERROR.value))
        values["log_tail"] = tuple(payload.get("log_tail") or ())
        values["message"] = payload.get("message") or ""
        return cls(**values)
