"""kpo_async.log_writer: pod log lines are written off the event loop, in order, in the trigger's context."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

from kpo_async.log_writer import LogWriter

TRIGGER = contextvars.ContextVar("trigger", default=None)


def test_a_blocked_log_write_does_not_block_the_event_loop_and_order_is_kept() -> None:
    writer = LogWriter()
    release = threading.Event()
    written: list[tuple[str | None, str]] = []

    def log(message: str) -> None:
        if message == "line 1":
            release.wait(5)  # the triggerer's log socket is full: the write blocks
        written.append((TRIGGER.get(), message))

    async def trigger(name: str, lines: int) -> None:
        TRIGGER.set(name)
        context = contextvars.copy_context()
        for i in range(1, lines + 1):
            writer.emit(context, log, f"line {i}")

    async def main() -> float:
        await asyncio.gather(trigger("a", 3), trigger("b", 2))
        started = time.monotonic()
        await asyncio.sleep(0.2)  # the loop runs on while the writer is stuck
        slept = time.monotonic() - started
        assert written == []
        release.set()
        await writer.drain()
        return slept

    slept = asyncio.run(main())
    assert slept < 1.0
    # Each line was written in its own trigger's logging context, in the order it was emitted.
    assert written == [("a", "line 1"), ("a", "line 2"), ("a", "line 3"), ("b", "line 1"), ("b", "line 2")]


def test_pace_holds_a_reader_back_while_the_writer_is_far_behind(monkeypatch) -> None:
    import kpo_async.log_writer as module

    monkeypatch.setattr(module, "HIGH_WATER", 3)
    writer = LogWriter()
    release = threading.Event()
    written: list[str] = []

    def log(message: str) -> None:
        release.wait(5)
        written.append(message)

    async def main() -> None:
        context = contextvars.copy_context()
        for i in range(5):
            writer.emit(context, log, f"line {i}")
        paced = asyncio.ensure_future(writer.pace())
        await asyncio.sleep(0.2)
        assert not paced.done(), "pace() returned while 5 lines were waiting (high water 3)"
        release.set()
        await asyncio.wait_for(paced, 5)
        assert written == [f"line {i}" for i in range(5)]

    asyncio.run(main())
