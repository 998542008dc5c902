"""Pod log lines written off the triggerer's event loop.

In a real ``airflow triggerer`` a trigger's log call is a blocking write to a socket read by the
triggerer's supervisor process, which also does the database work. When the supervisor falls
behind (a burst of lines, a slow database, a loaded host), that write blocks the event loop that
every trigger shares: measured with 1,000 pods at one line a second, the loop stalled for 4-14 s at
a time and the supervisor declared the trigger runner deadlocked. So the pod's lines go through
one writer thread per process instead: `emit` only queues (in the trigger's logging context, so
each line still lands in its task's trigger log), `drain` waits until a trigger's lines are
written, and `pace` holds a reader back while too many lines are waiting, which stops reading the
stream (TCP back-pressure to the API server) rather than growing memory.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

#: Lines queued beyond this make readers wait (`pace`) until the writer catches up.
HIGH_WATER = 20_000


class LogWriter:
    """One daemon thread writing queued log calls in order."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending = 0  # changed by both threads, under _lock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def emit(self, context: contextvars.Context, log: Callable[[str], Any], message: str) -> None:
        """Queue ``log(message)`` to run in `context` (a copy of the trigger's: its log routing)."""
        with self._lock:
            self._pending += 1
        self._queue.put((context, log, message))
        if self._thread is None:
            self._start()

    async def drain(self) -> None:
        """Return once everything queued before this call has been written."""
        if self._thread is None:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.put((None, loop, done))
        await done

    async def pace(self) -> None:
        """Wait while the writer is far behind (a reader calls this between chunks)."""
        if self._pending > HIGH_WATER:
            await self.drain()
        else:
            await asyncio.sleep(0)  # a chatty pod must not monopolise the loop either

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kpo-async-log-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            context, log, message = self._queue.get()
            if context is None:  # a drain marker: (None, loop, future)
                try:
                    log.call_soon_threadsafe(_resolve, message)
                except RuntimeError:  # that loop is closed: nobody waits any more
                    pass
                continue
            try:
                context.run(log, message)
            except Exception:  # a failing handler must not stop every other trigger's lines
                pass
            with self._lock:
                self._pending -= 1


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


#: The process-wide writer (created lazily; its thread starts with the first line).
WRITER = LogWriter()
