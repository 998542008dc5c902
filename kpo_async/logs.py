"""The pure parts of resumable, bounded log following: timestamps, cursors, lines.

The API server's ``sinceTime`` has one-second precision, so a resumed read can repeat lines.
`LogCursor` remembers the exact timestamp of the last line delivered and how many lines carried
that same timestamp; a resumed read skips everything up to and including them. Lines are split
from raw chunks with a fixed cap, so a pod printing a 100 MB line without a newline costs at most
`max_line_bytes` of memory here; the overflow is dropped and the line marked as truncated.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import NamedTuple

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)")
TRUNCATION_MARKER = " [kpo-async: line truncated, {dropped} bytes dropped]"
DEFAULT_MAX_LINE_BYTES = 64 * 1024


def parse_timestamp(text: str) -> str:
    """An RFC3339 timestamp in one form, ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`` (UTC, nine digits), so
    that text order is time order (RFC3339Nano trims trailing zeros: as given, it is not).
    ValueError if `text` is not one."""
    # Fast path, once per log line: the API server's UTC form. The whole second is checked once
    # per second of log (cached).
    if len(text) > 20 and text[-1] == "Z" and text[19] == "." and text[20:-1].isdigit():
        return f"{_utc_second(text[:19])}.{text[20:-1][:9].ljust(9, '0')}Z"
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an RFC3339 timestamp: {text!r}")
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone in ("Z", "z") else zone))
    return f"{moment.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%S}.{(fraction or '').ljust(9, '0')[:9]}Z"


@functools.lru_cache(maxsize=64)
def _utc_second(whole: str) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) as given, once the general parser has validated it."""
    return parse_timestamp(whole + "Z")[:19]  # too short for the fast path


class LogCursor(NamedTuple):
    """Where a container's log has been delivered up to: serializable into trigger kwargs."""

    #: The last delivered line's timestamp, in `parse_timestamp`'s form ("": none yet, before any).
    timestamp: str = ""
    #: Lines already delivered whose timestamp equals `timestamp`.
    count_at_timestamp: int = 0

    def since_time(self) -> str:
        """The `sinceTime` to resume from: the timestamp's whole second (the API's precision)."""
        return f"{self.timestamp[:19]}Z" if self.timestamp else ""


class LineSplitter:
    """Splits a byte stream into lines, holding at most `max_line_bytes` of any one line."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._dropped = 0

    def feed(self, chunk: bytes) -> list[tuple[bytes, int]]:
        """Lines completed by `chunk`, each with the number of bytes dropped from it."""
        *ended, rest = chunk.split(b"\n")
        lines: list[tuple[bytes, int]] = []
        for piece in ended:
            self._append(piece)
            lines.append((bytes(self._buffer), self._dropped))
            self._buffer.clear()
            self._dropped = 0
        self._append(rest)
        return lines

    def flush(self) -> list[tuple[bytes, int]]:
        """The line held so far, if any: the unterminated last line of a log that does not end with
        a newline."""
        return self.feed(b"\n") if self._buffer or self._dropped else []

    def _append(self, piece: bytes) -> None:
        room = self.max_line_bytes - len(self._buffer)  # never negative: the buffer is kept within it
        self._buffer += piece[:room]
        self._dropped += max(0, len(piece) - room)


def decode_line(raw: bytes, dropped: int) -> tuple[str | None, str]:
    """Split ``<timestamp> <text>`` (the timestamp in `parse_timestamp`'s form) and decode the text
    (invalid UTF-8 becomes U+FFFD)."""
    stamp_text, _, rest = raw.partition(b" ")
    try:
        stamp = parse_timestamp(stamp_text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        stamp, rest = None, raw
    text = rest.decode("utf-8", errors="replace").rstrip("\r")
    if dropped:
        text += TRUNCATION_MARKER.format(dropped=dropped)
    return stamp, text


def cursors_to_str(cursors: Mapping[str, LogCursor], base: str) -> str | None:
    """Each container's cursor (``<timestamp>/<count>``), as one string. The base container's alone
    keeps the older single-cursor form; several are ``name=<cursor>,name=<cursor>``."""
    known = {name: f"{stamp}/{count}" for name, (stamp, count) in sorted(cursors.items()) if stamp}
    if set(known) <= {base}:
        return known.get(base)
    return ",".join(f"{name}={text}" for name, text in known.items())


def cursors_from_str(text: str | None, base: str) -> dict[str, LogCursor]:
    """The cursors written by `cursors_to_str`, or by an older version (the base container's only,
    without a name)."""
    cursors: dict[str, LogCursor] = {}
    for entry in text.split(",") if text else ():
        name, _, cursor = entry.rpartition("=")
        stamp, _, count = cursor.rpartition("/")
        cursors[name or base] = LogCursor(parse_timestamp(stamp), int(count or 0)) if cursor else LogCursor()
    return cursors
