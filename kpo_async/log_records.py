"""Turn a pod's lines into log records at a rate the triggerer can write.

In a real triggerer every log record crosses a socket to the triggerer's supervisor process. The
supervisor reads that socket 4 KiB per turn of its loop, and every turn also queries the database
for all of its triggers: at 1,000 pods printing a line a second, one record per line (~300 bytes
with Airflow's context) kept it busy most of a core, and a supervisor that falls behind blocks
every trigger's event loop (docs/scale.md). So the lines of all pods followed in one process share
a budget of records a second (``[kpo_async] log_records_per_second``). While it lasts,
each line is its own record at once. Past it, and until no pod's lines wait, each pod's lines are
held and written together: one record per run of lines of one level, each pod once per (waiting
pods / budget) seconds, all pods' records on the same whole-second tick, back to back, so that
the socket is quiet in between. A write to that socket blocks the whole event loop once the
supervisor has fallen behind (it is busiest when many pods end at once), so held lines also wait
for a later tick while the socket holds more than half of what it can. No line is dropped or
reordered; only the grouping and the delay change with the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import math
import os
import socket
import stat
import struct
import termios
import time
from collections.abc import Callable
from typing import Any

from kpo_async.settings import setting

#: Records that may be written at once before the rate applies (a burst at a pod's start or end).
BURST_SECONDS = 5.0
#: Waiting lines are written at the latest after this, unless the supervisor is behind (a bound
#: on what a user waits to see) ...
MAX_DELAY_SECONDS = 30.0
#: ... and not sooner than this once the budget is spent.
MIN_DELAY_SECONDS = 0.5
#: Held lines are written on multiples of this (seconds of the loop's clock), together.
TICK_SECONDS = 1.0
#: Held lines are written as soon as they add up to this many characters: memory stays bounded
#: (a pod printing 100 MB at once is written in records of this size).
MAX_HELD_CHARS = 64 * 1024
#: Held lines wait for a later tick while the log channel's unread bytes exceed this share of its
#: send buffer: the rest is room for Airflow's own records and for writes that cannot wait.
CHANNEL_BUSY_SHARE = 0.5


class RecordBudget:
    """A token bucket shared by every `LineBatcher` of the process."""

    def __init__(self, per_second: float, burst_seconds: float = BURST_SECONDS) -> None:
        self.per_second = per_second
        self.capacity = max(1.0, per_second * burst_seconds)
        self.tokens = self.capacity
        self._refilled = time.monotonic()
        #: Batchers holding lines; they share the budget, so each waits longer when there are more.
        self.waiting: set[LineBatcher] = set()

    def take(self, *, force: bool = False) -> bool:
        """Spend one record; False (and nothing spent) if the budget is out, unless `force`."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self._refilled) * self.per_second)
        self._refilled = now
        if self.tokens < 1 and not force:
            return False
        self.tokens = max(-self.capacity, self.tokens - 1)
        return True

    def delay(self) -> float:
        """How long a batcher waits before writing its lines, now that the budget is spent."""
        return min(MAX_DELAY_SECONDS, max(MIN_DELAY_SECONDS, len(self.waiting) / self.per_second))


@functools.cache
def shared_budget() -> RecordBudget:
    """The process's budget (one triggerer process: one budget for all its triggers)."""
    return RecordBudget(setting("log_records_per_second"))


class LineBatcher:
    """One pod's lines on their way to its logger: written at once, or held and written together.

    :param write: called with (logger method name, text) per record, e.g. ``("info", "[base] a")``.
    """

    def __init__(self, write: Callable[[str, str], Any], budget: RecordBudget | None = None) -> None:
        self._write = write
        self._budget = budget or shared_budget()
        self._held: list[tuple[str, str]] = []
        self._held_chars = 0
        self._timer: asyncio.TimerHandle | None = None
        #: Records written so far (a trigger waits for the supervisor to read the last ones).
        self.records = 0

    def add(self, level: str, text: str) -> None:
        # Once lines wait anywhere, every pod's lines wait for the tick: nothing reaches the
        # supervisor between ticks, so its socket drains and `wait_until_read` returns early.
        if not self._budget.waiting and self._budget.take():
            self.records += 1
            self._write(level, text)
            return
        self._held.append((level, text))
        self._held_chars += len(text)
        if self._held_chars >= MAX_HELD_CHARS:
            self.flush()
        elif self._timer is None:
            self._budget.waiting.add(self)
            self._schedule(self._budget.delay())

    def _schedule(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        due = math.ceil((loop.time() + delay) / TICK_SECONDS) * TICK_SECONDS
        self._timer = loop.call_at(due, self._on_tick)

    def _on_tick(self) -> None:
        self._timer = None
        if log_channel_busy():  # writing now could block the loop until the supervisor reads
            self._schedule(TICK_SECONDS / 2)  # the next tick
            return
        self.flush()

    def flush(self) -> None:
        """Write every held line now: one record per run of lines at the same level."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._budget.waiting.discard(self)
        held, self._held, self._held_chars = self._held, [], 0
        for level, run in itertools.groupby(held, key=lambda line: line[0]):
            self._budget.take(force=True)
            self.records += 1
            self._write(level, "\n".join(text for _, text in run))


#: How long a trigger waits for the triggerer's supervisor to read its last records.
READ_BACK_SECONDS = 1.0
_READ_BACK_POLL_SECONDS = 0.02


def _log_channel_fd() -> int | None:
    """The socket this process's structlog output goes to (a trigger runner's channel to its
    supervisor), or None elsewhere (a worker, a test) or on an Airflow that keeps it elsewhere."""
    import structlog

    factory = structlog.get_config().get("logger_factory")
    output = getattr(factory, "io", None) or getattr(factory, "_file", None)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        fd = output.fileno()  # type: ignore[union-attr]
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            return int(fd)
    return None


@functools.cache
def _send_buffer(fd: int) -> int:
    with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # a duplicate, closed after
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))


def log_channel_busy() -> bool:
    """Whether the supervisor has yet to read more than `CHANNEL_BUSY_SHARE` of the log channel."""
    fd = _log_channel_fd()
    with contextlib.suppress(OSError):
        return fd is not None and _unread_bytes(fd) > CHANNEL_BUSY_SHARE * _send_buffer(fd)
    return False


def _unread_bytes(fd: int) -> int:
    """Bytes written to the Unix socket `fd` that its reader has not read yet (SIOCOUTQ)."""
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, bytes(4)))[0])


async def wait_until_read(timeout: float = READ_BACK_SECONDS) -> None:
    """Wait (bounded) until the triggerer's supervisor has read what this process has logged so far.

    The supervisor reads the log channel 4 KiB per turn of its loop and closes a trigger's log file
    as soon as the trigger has finished: a trigger's last lines still queued behind other triggers'
    records would then miss the task's log. Other triggers keep writing behind ours, so the queue
    may never be empty: what has been read since is counted instead (each fall of the queue's
    length between two looks is at least that much read), until it covers what was queued.
    """
    fd = _log_channel_fd()
    if fd is None:
        return
    with contextlib.suppress(OSError):
        queued = last = _unread_bytes(fd)
        read = 0
        for _ in range(math.ceil(timeout / _READ_BACK_POLL_SECONDS)):
            if read >= queued:
                return
            await asyncio.sleep(_READ_BACK_POLL_SECONDS)
            now = _unread_bytes(fd)  # an empty queue means all was read: the sum below covers it
            read, last = read + max(0, last - now), now
