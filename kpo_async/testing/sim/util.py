"""Small helpers: Kubernetes time formats, quantities, identifiers, JSON."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import datetime, timezone
from fractions import Fraction
from typing import Any


def fmt_time(t: float | None = None) -> str:
    """metav1.Time: RFC3339 with second precision."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def fmt_time_nano(ns: int) -> str:
    """The kubelet's log timestamp: RFC3339 with exactly nine fractional digits."""
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def fmt_micro(t: float) -> str:
    """metav1.MicroTime (events' eventTime)."""
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
)


def parse_rfc3339(value: str) -> float:
    """Seconds since the epoch; raises ValueError on a malformed value."""
    m = _RFC3339.match(value.strip())
    if not m:
        raise ValueError(value)
    y, mo, d, h, mi, s, frac, tz = m.groups()
    dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=timezone.utc)
    t = dt.timestamp() + (float(frac) if frac else 0.0)
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        t -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return t


def new_uid() -> str:
    return str(uuid.uuid4())


def rand_hex(n: int) -> str:
    return os.urandom((n + 1) // 2).hex()[:n]


_SUFFIX_ALNUM = "bcdfghjklmnpqrstvwxz2456789"  # what the apiserver uses for generateName


def rand_suffix(n: int = 5) -> str:
    raw = os.urandom(n)
    return "".join(_SUFFIX_ALNUM[b % len(_SUFFIX_ALNUM)] for b in raw)


_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DEC = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1}
_DEC.update({"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18})
_QTY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE]([+-]?\d+))?$")


def parse_quantity(value: Any) -> Fraction:
    """A resource.Quantity ("100m", "1.5Gi", "1e3", 2) as an exact number; ValueError if malformed."""
    if isinstance(value, (int, float)):
        return Fraction(str(value))
    m = _QTY.match(str(value).strip())
    if not m:
        raise ValueError(f"quantities must match the regular expression '{_QTY.pattern}'")
    num, suffix, exp = m.groups()
    base = Fraction(num)
    if exp is not None:
        return base * Fraction(10) ** int(exp)
    if suffix in _BIN:
        return base * _BIN[suffix]
    return base * _DEC.get(suffix or "", 1)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def monotonic() -> float:
    return time.monotonic()
