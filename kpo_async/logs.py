"""Resumable, bounded log following.

The API server's ``sinceTime`` has one-second precision, so a resumed read can repeat lines.
`LogCursor` remembers the exact timestamp of the last line delivered and how many lines carried
that same timestamp; a resumed read skips everything up to and including them. Lines are split
from raw chunks with a fixed cap, so a pod printing a 100 MB line without a newline costs at most
`max_line_bytes` of memory here; the overflow is dropped and the line marked as truncated.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

import aiohttp

from kpo_async.api import open_response

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
    return _parse_timestamp_slow(text)


def _parse_timestamp_slow(text: str) -> str:
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an RFC3339 timestamp: {text!r}")
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone in ("Z", "z") else zone))
    return f"{moment.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%S}.{(fraction or '').ljust(9, '0')[:9]}Z"


@functools.lru_cache(maxsize=64)
def _utc_second(whole: str) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) as given, once the general parser has validated it."""
    return _parse_timestamp_slow(whole + "Z")[:19]


class LogCursor(NamedTuple):
    """Where a container's log has been delivered up to: serializable into trigger kwargs."""

    #: The last delivered line's timestamp, in `parse_timestamp`'s form.
    timestamp: str | None = None
    #: Lines already delivered whose timestamp equals `timestamp`.
    count_at_timestamp: int = 0

    def since_time(self) -> str:
        """The `sinceTime` to resume from: the timestamp's whole second (the API's precision)."""
        return f"{self.timestamp[:19]}Z" if self.timestamp else ""

    def to_str(self) -> str | None:
        return None if self.timestamp is None else f"{self.timestamp}/{self.count_at_timestamp}"

    @classmethod
    def from_str(cls, text: str | None) -> LogCursor:
        if not text:
            return cls()
        stamp, _, count = text.rpartition("/")
        return cls(parse_timestamp(stamp), int(count or 0))


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
            lines.extend(self.flush() or [(b"", 0)])  # an empty line is a line too
        self._append(rest)
        return lines

    def flush(self) -> list[tuple[bytes, int]]:
        """The line held so far, if any: the unterminated last line of a log that does not end with
        a newline."""
        if not self._buffer and not self._dropped:
            return []
        line = (bytes(self._buffer), self._dropped)
        self._buffer.clear()
        self._dropped = 0
        return [line]

    def _append(self, piece: bytes) -> None:
        room = self.max_line_bytes - len(self._buffer)  # never negative: the buffer is kept within it
        self._buffer += piece[:room]
        self._dropped += max(0, len(piece) - room)


#: A real kubelet answers a log request for a container it already removed (a pod being deleted) with
#: 200 and this text, without a timestamp, in place of the log (docs/real-control-plane.md).
KUBELET_LOG_GONE = "unable to retrieve container logs for "


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


@dataclass(eq=False)
class ContainerLog:
    """A container's log, read from a cursor that advances as each line is delivered.

    `cursor` is current even when a read fails half-way, so the next read resumes exactly there.
    """

    api_client: Any
    namespace: str
    pod: str
    container: str
    cursor: LogCursor
    #: Told each line delivered.
    sink: Callable[[str], None]
    #: While a read is in progress: the last line's place in it (its timestamp, and how many lines
    #: of the read had it), and the cursor it started from while its lines are repeats of earlier ones.
    _place: LogCursor = field(default=LogCursor(), init=False)
    _repeats: LogCursor | None = field(default=None, init=False)

    async def read(self, *, follow: bool) -> None:
        """Deliver the lines after the cursor; with `follow`, until the stream ends.

        A followed stream ends when the container terminates or when the connection drops; the
        caller tells them apart by the pod's state. HTTP errors raise `kpo_async.errors.ApiError`s.
        """
        query = [("container", self.container), ("timestamps", "true"), ("follow", str(follow).lower())]
        if self.cursor.timestamp is not None:
            # The generated client has no sinceTime parameter, hence the raw call.
            query.append(("sinceTime", self.cursor.since_time()))
        # No read timeout: a quiet container may print nothing for hours.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        response = await open_response(
            self.api_client.call_api(
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                "GET",
                path_params={"namespace": self.namespace, "name": self.pod},
                query_params=query,
                # The API server refuses text/plain here (406); "*/*" gets the plain-text log.
                header_params={"Accept": "*/*"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            ),
            what=f"reading the log of {self.namespace}/{self.pod}",
            verb="get",
            resource="pods/log",
        )
        # The read starts at the cursor's whole second: it repeats every line up to the cursor.
        self._place, self._repeats = LogCursor(), self.cursor if self.cursor.timestamp is not None else None
        splitter = LineSplitter()
        try:
            async for chunk in response.content.iter_any():
                self._deliver(splitter.feed(chunk))
                await asyncio.sleep(0)  # a chatty pod must not monopolise the loop
            self._deliver(splitter.flush())
        finally:
            response.release()

    def _deliver(self, lines: list[tuple[bytes, int]]) -> None:
        for raw, dropped in lines:
            stamp, text = decode_line(raw, dropped)
            if stamp is None:
                if not text.startswith(KUBELET_LOG_GONE):  # the kubelet's note that the container is gone
                    self.sink(text)
                continue
            last = self._place
            self._place = LogCursor(stamp, last.count_at_timestamp + 1 if stamp == last.timestamp else 1)
            if self._repeats is not None:
                if self._place <= self._repeats:
                    continue
                self._repeats = None  # past the cursor: later lines are new, whatever their stamps
            self.sink(text)
            self.cursor = self._place


def cursors_to_str(cursors: Mapping[str, LogCursor], base: str) -> str | None:
    """One container's cursor per entry, as one string. The base container's alone keeps the older
    single-cursor form (``<timestamp>/<count>``); several are ``name=<cursor>,name=<cursor>``."""
    known = {name: c.to_str() for name, c in sorted(cursors.items()) if c.timestamp is not None}
    if set(known) <= {base}:
        return known.get(base)
    return ",".join(f"{name}={text}" for name, text in known.items())


def cursors_from_str(text: str | None, base: str) -> dict[str, LogCursor]:
    """The cursors written by `cursors_to_str`, or by an older version (the base container's only)."""
    if not text:
        return {}
    if "=" not in text:
        return {base: LogCursor.from_str(text)}
    entries = (entry.partition("=") for entry in text.split(","))
    return {name: LogCursor.from_str(cursor) for name, _, cursor in entries}
