"""The `sim.kpo-async.io/behavior` annotation: a container described by numbers, not a script.

Its log is never stored: line i (1-based) is written at ``start + i / rate`` and its content is
computed on demand, so thousands of such pods or a 100 MB log cost no memory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

_KEYS = {
    "duration_seconds",
    "log_lines_per_second",
    "log_line",
    "log_line_bytes",
    "log_invalid_utf8",
    "log_final_newline",
    "exit_code",
    "reason",
    "xcom",
    "xcom_raw",
}


@dataclass(frozen=True)
class Behavior:
    duration_seconds: float = 0.0
    log_lines_per_second: float = 0.0
    log_line: str = "line {i}"
    log_line_bytes: int = 0
    log_invalid_utf8: bool = False
    log_final_newline: bool = True
    exit_code: int = 0
    reason: str | None = None
    has_xcom: bool = False
    xcom: Any = None
    xcom_raw: str | None = None

    @property
    def total_lines(self) -> int:
        if self.log_lines_per_second <= 0:
            return 0
        return math.floor(self.duration_seconds * self.log_lines_per_second + 1e-9)

    def line_offset(self, i: int) -> float:
        """Seconds after the start at which line i is written."""
        return i / self.log_lines_per_second

    def lines_written_by(self, elapsed: float) -> int:
        """How many lines exist `elapsed` seconds after the start."""
        if self.log_lines_per_second <= 0 or elapsed <= 0:
            return 0
        return min(self.total_lines, math.floor(elapsed * self.log_lines_per_second + 1e-9))

    def line(self, i: int, final: bool = False) -> bytes:
        """Content of line i including its newline (except the last one if log_final_newline=False)."""
        text = self.log_line.replace("{i}", str(i))
        data = text.encode()
        if self.log_invalid_utf8:
            data += b" \xff\xfe"
        if self.log_line_bytes and len(data) < self.log_line_bytes:
            data += b"." * (self.log_line_bytes - len(data))
        if final and i == self.total_lines and not self.log_final_newline:
            return data
        return data + b"\n"

    def xcom_bytes(self) -> bytes | None:
        if self.xcom_raw is not None:
            return self.xcom_raw.encode()
        if self.has_xcom:
            return json.dumps(self.xcom).encode()
        return None

    def terminated_reason(self) -> str:
        if self.reason:
            return self.reason
        return "Completed" if self.exit_code == 0 else "Error"


def parse_behavior(raw: str | dict[str, Any]) -> Behavior:
    """Parse the annotation value; ValueError with a short explanation if it is malformed."""
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON: {e}") from e
    else:
        data = raw
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object")
    unknown = set(data) - _KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")

    def num(key: str, default: float) -> float:
        v = data.get(key, default)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or math.isnan(v):
            raise ValueError(f"{key} must be a non-negative number")
        return float(v)

    exit_code = data.get("exit_code", 0)
    if not isinstance(exit_code, int) or isinstance(exit_code, bool) or not 0 <= exit_code <= 255:
        raise ValueError("exit_code must be an integer 0..255")
    log_line = data.get("log_line", "line {i}")
    if not isinstance(log_line, str):
        raise ValueError("log_line must be a string")
    xcom_raw = data.get("xcom_raw")
    if xcom_raw is not None and not isinstance(xcom_raw, str):
        raise ValueError("xcom_raw must be a string")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("reason must be a string")
    return Behavior(
        duration_seconds=num("duration_seconds", 0.0),
        log_lines_per_second=num("log_lines_per_second", 0.0),
        log_line=log_line,
        log_line_bytes=int(num("log_line_bytes", 0)),
        log_invalid_utf8=bool(data.get("log_invalid_utf8", False)),
        log_final_newline=bool(data.get("log_final_newline", True)),
        exit_code=exit_code,
        reason=reason,
        has_xcom="xcom" in data,
        xcom=data.get("xcom"),
        xcom_raw=xcom_raw,
    )
