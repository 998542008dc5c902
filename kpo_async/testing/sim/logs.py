"""Container logs with CRI semantics (one timestamp per line) and the kubelet's query options."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from kpo_async.testing.sim.behavior import Behavior
from kpo_async.testing.sim.util import fmt_time_nano

CHUNK = 64 * 1024


@dataclass
class LogOptions:
    follow: bool = False
    timestamps: bool = False
    since_ns: int | None = None
    tail_lines: int | None = None
    limit_bytes: int | None = None
    #: 0 = both streams (All), 1 = stdout only, 2 = stderr only (PodLogOptions.stream)
    stream: int = 0


class ContainerLog:
    """Base: an append-only sequence of timestamped lines, closed when the container stops."""

    def __init__(self) -> None:
        self.closed = False
        self._changed: asyncio.Event | None = None  # created when someone follows

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def close(self, at_ns: int | None = None) -> None:
        self.closed = True
        self._notify()

    # subclasses: count(), first_index(), timestamp(i), line(i)
    def first_index(self) -> int:
        raise NotImplementedError

    def end_index(self) -> int:
        """One past the last line available now."""
        raise NotImplementedError

    def timestamp(self, i: int) -> int:
        raise NotImplementedError

    def line(self, i: int) -> bytes:
        raise NotImplementedError

    def stream_of(self, i: int) -> int:
        return 1

    def index_since(self, since_ns: int) -> int:
        lo, hi = self.first_index(), self.end_index()
        while lo < hi:
            mid = (lo + hi) // 2
            if self.timestamp(mid) < since_ns:
                lo = mid + 1
            else:
                hi = mid
        return lo

    async def wait_change(self, timeout: float | None = None) -> None:
        if self.closed:
            return
        if self._changed is None:
            self._changed = asyncio.Event()
        ev = self._changed
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def text(self) -> bytes:
        return b"".join(self.line(i) for i in range(self.first_index(), self.end_index()))

    def tail_text(self, max_lines: int, max_bytes: int) -> str:
        start = max(self.first_index(), self.end_index() - max_lines)
        data = b"".join(self.line(i) for i in range(start, self.end_index()))
        return data[-max_bytes:].decode(errors="replace")

    async def read(self, opts: LogOptions) -> AsyncIterator[bytes]:
        """Yield the log as chunks, honouring tail/since/timestamps/limit/follow."""
        i = self.first_index()
        if opts.tail_lines is not None:
            i = max(i, self.end_index() - opts.tail_lines)
        if opts.since_ns is not None:
            i = max(i, self.index_since(opts.since_ns))
        remaining = opts.limit_bytes
        while True:
            end = self.end_index()
            i = max(i, self.first_index())  # lines dropped by the size cap meanwhile
            buf: list[bytes] = []
            size = 0
            while i < end:
                if opts.stream and self.stream_of(i) != opts.stream:
                    i += 1
                    continue
                data = self.line(i)
                if opts.timestamps:
                    data = fmt_time_nano(self.timestamp(i)).encode() + b" " + data
                i += 1
                if remaining is not None:
                    if len(data) >= remaining:
                        buf.append(data[:remaining])
                        yield b"".join(buf)
                        return
                    remaining -= len(data)
                buf.append(data)
                size += len(data)
                if size >= CHUNK:
                    yield b"".join(buf)
                    buf, size = [], 0
            if buf:
                yield b"".join(buf)
            if not opts.follow or (self.closed and i >= self.end_index()):
                return
            await self._wait_for_more(i)

    async def _wait_for_more(self, i: int) -> None:
        await self.wait_change()


class StoredLog(ContainerLog):
    """What the shell interpreter writes: lines buffered per stream, stored with their time."""

    def __init__(self, max_bytes: int = 50 * 1024 * 1024) -> None:
        super().__init__()
        self._ts: list[int] = []
        self._lines: list[bytes] = []
        self._streams = bytearray()
        self._base = 0  # index of _lines[0]
        self._bytes = 0
        self._max = max_bytes
        self._partial: dict[int, bytearray] = {}

    def write(self, stream: int, data: bytes) -> None:
        """Append output of stream 1 (stdout) or 2 (stderr); complete lines become log entries."""
        if self.closed or not data:
            return
        buf = self._partial.setdefault(stream, bytearray())
        buf += data
        if b"\n" not in data:
            if len(buf) >= 16 * 1024:  # the CRI splits very long lines too
                self._append(bytes(buf), stream)
                buf.clear()
                self._notify()
            return
        *lines, rest = bytes(buf).split(b"\n")
        for ln in lines:
            self._append(ln + b"\n", stream)
        buf.clear()
        buf += rest
        self._notify()

    def _append(self, line: bytes, stream: int) -> None:
        self._ts.append(time.time_ns())
        self._lines.append(line)
        self._streams.append(stream)
        self._bytes += len(line)
        if self._bytes > self._max and len(self._lines) > 1:
            # drop the oldest tenth at once (the CRI rotates whole files, not lines)
            target, k = self._max * 9 // 10, 0
            while self._bytes > target and k < len(self._lines) - 1:
                self._bytes -= len(self._lines[k])
                k += 1
            del self._lines[:k]
            del self._ts[:k]
            del self._streams[:k]
            self._base += k

    def close(self, at_ns: int | None = None) -> None:
        if self.closed:
            return
        for stream, buf in self._partial.items():
            if buf:
                self._append(bytes(buf), stream)
        self._partial.clear()
        super().close(at_ns)

    def first_index(self) -> int:
        return self._base

    def end_index(self) -> int:
        return self._base + len(self._lines)

    def timestamp(self, i: int) -> int:
        return self._ts[i - self._base]

    def line(self, i: int) -> bytes:
        return self._lines[i - self._base]

    def stream_of(self, i: int) -> int:
        return self._streams[i - self._base]

    def index_since(self, since_ns: int) -> int:
        return self._base + bisect.bisect_left(self._ts, since_ns)


class BehaviorLog(ContainerLog):
    """Lazily generated log of a behaviour-annotated container (see behavior.py)."""

    def __init__(self, behavior: Behavior, start_ns: int) -> None:
        super().__init__()
        self.b = behavior
        self.start_ns = start_ns
        self._end_count: int | None = None

    def close(self, at_ns: int | None = None) -> None:
        """Stop at `at_ns` (early termination) or after all lines (normal exit)."""
        if self.closed:
            return
        at = time.time_ns() if at_ns is None else at_ns
        self._end_count = self.b.lines_written_by((at - self.start_ns) / 1e9)
        super().close(at)

    def first_index(self) -> int:
        return 1

    def end_index(self) -> int:
        if self._end_count is not None:
            return self._end_count + 1
        return self.b.lines_written_by((time.time_ns() - self.start_ns) / 1e9) + 1

    def timestamp(self, i: int) -> int:
        return self.start_ns + round(self.b.line_offset(i) * 1e9)

    def index_since(self, since_ns: int) -> int:
        rate = self.b.log_lines_per_second
        if rate <= 0:
            return self.end_index()
        import math

        i = math.ceil((since_ns - self.start_ns) / 1e9 * rate - 1e-9)
        while i > 1 and self.timestamp(i - 1) >= since_ns:
            i -= 1
        while self.timestamp(max(i, 1)) < since_ns and i < self.end_index():
            i += 1
        return max(1, i)

    def line(self, i: int) -> bytes:
        return self.b.line(i, final=True)

    async def _wait_for_more(self, i: int) -> None:
        if self.closed:
            return
        rate = self.b.log_lines_per_second
        if rate <= 0 or i > self.b.total_lines:
            await self.wait_change()
            return
        due = self.timestamp(i)
        delay = max(0.02, (due - time.time_ns()) / 1e9)
        await self.wait_change(timeout=delay)
