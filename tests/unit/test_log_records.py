"""`kpo_async.log_records`: pod lines become log records at a bounded rate, none lost or reordered.

The tests that wait for ticks and delays run on `VirtualClockLoop`: its clock moves to the next
timer instead of waiting, so each wait is exact and takes no wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from kpo_async import log_records
from kpo_async.log_records import MAX_HELD_CHARS, LineBatcher, RecordBudget, shared_budget, wait_until_read


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop with its own clock: when nothing is ready, the clock jumps to the next timer."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__()
        real_select = self._selector.select  # type: ignore[attr-defined]

        def select(timeout: float | None = None) -> Any:
            events = real_select(0)  # I/O that is ready (a socketpair's), never a wait
            if not events and timeout:
                self._now += timeout
            return events

        self._selector.select = select  # type: ignore[attr-defined]

    def time(self) -> float:
        return self._now


def on_virtual_clock(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run the async `test` on a `VirtualClockLoop` of its own."""

    def run() -> None:
        loop = VirtualClockLoop()
        try:
            loop.run_until_complete(test())
        finally:
            loop.close()

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


class Records:
    def __init__(self) -> None:
        self.written: list[tuple[str, str]] = []

    def __call__(self, level: str, text: str) -> None:
        self.written.append((level, text))


async def test_each_line_is_its_own_record_at_once_while_the_budget_lasts() -> None:
    records = Records()
    batcher = LineBatcher(records, RecordBudget(per_second=10, burst_seconds=1))
    for i in range(10):
        batcher.add("info", f"[base] line {i}")
    assert records.written == [("info", f"[base] line {i}") for i in range(10)]


@on_virtual_clock
async def test_past_the_budget_lines_wait_then_go_together_one_record_per_level_run() -> None:
    records = Records()
    budget = RecordBudget(per_second=2, burst_seconds=0.5)  # one record at once, then 2 a second
    batcher = LineBatcher(records, budget)
    batcher.add("info", "[base] first")
    for level, text in [("info", "a"), ("info", "b"), ("warning", "W"), ("info", "c")]:
        batcher.add(level, f"[base] {text}")
    assert records.written == [("info", "[base] first")]  # the rest is held ...
    assert budget.waiting == {batcher}
    # ... until the delay has passed, on the next whole tick
    await asyncio.sleep(log_records.MIN_DELAY_SECONDS + log_records.TICK_SECONDS + 0.2)
    assert records.written == [
        ("info", "[base] first"),
        ("info", "[base] a\n[base] b"),
        ("warning", "[base] W"),
        ("info", "[base] c"),
    ]
    assert budget.waiting == set()


async def test_held_lines_are_written_once_they_reach_the_size_bound() -> None:
    records = Records()
    batcher = LineBatcher(records, RecordBudget(per_second=1, burst_seconds=0))
    batcher.add("info", "x")  # spends the only token
    line = "y" * 1000
    count = MAX_HELD_CHARS // len(line) + 1  # the line that reaches the bound
    for _ in range(count):
        batcher.add("info", line)
    assert records.written == [("info", "x"), ("info", "\n".join([line] * count))]
    batcher.flush()  # nothing left: no empty record
    assert len(records.written) == 2


async def test_each_pod_waits_longer_when_more_pods_share_the_budget() -> None:
    budget = RecordBudget(per_second=100)
    assert budget.delay() == log_records.MIN_DELAY_SECONDS
    budget.waiting.update(LineBatcher(Records(), budget) for _ in range(1000))
    assert budget.delay() == pytest.approx(10.0)  # 1,000 pods at 100 records a second
    budget.waiting.update(LineBatcher(Records(), budget) for _ in range(9000))
    assert budget.delay() == log_records.MAX_DELAY_SECONDS


def test_the_budget_is_set_per_process_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__KPO_ASYNC__LOG_RECORDS_PER_SECOND", "250")
    shared_budget.cache_clear()
    try:
        assert shared_budget().per_second == 250
        assert shared_budget() is shared_budget()
    finally:
        shared_budget.cache_clear()


@on_virtual_clock
async def test_every_pods_held_lines_are_written_together_on_the_same_tick() -> None:
    """The supervisor wakes up (and queries its database) per read of the log socket: held records
    of all pods go out back to back, not spread over the second."""
    loop = asyncio.get_running_loop()
    written_at: dict[str, float] = {}
    budget = RecordBudget(per_second=4, burst_seconds=0)  # one token, 4 a second

    def writer(pod: str) -> LineBatcher:
        return LineBatcher(lambda level, text: written_at.setdefault(pod, loop.time()), budget)

    first, second = writer("a"), writer("b")
    tick = log_records.TICK_SECONDS
    await asyncio.sleep(tick - loop.time() % tick + 0.05)  # just after a tick
    budget.take(force=True)  # spent: a and b each wait the least delay, 0.5 s
    first.add("info", "[base] from a")
    await asyncio.sleep(0.2)
    second.add("info", "[base] from b")  # 0.2 s later, due in the same tick
    await asyncio.sleep(log_records.MIN_DELAY_SECONDS + 2 * log_records.TICK_SECONDS + 0.5)
    assert set(written_at) == {"a", "b"}
    assert written_at["b"] == written_at["a"]  # one after the other, on the same turn of the loop
    assert written_at["a"] % log_records.TICK_SECONDS == pytest.approx(0, abs=1e-9)


@on_virtual_clock
async def test_a_trigger_waits_until_the_supervisor_has_read_its_last_records() -> None:
    """The log channel is a socket to the supervisor (a socketpair here, as in a trigger runner)."""
    import socket

    import structlog

    ours, supervisor = socket.socketpair()
    old = structlog.get_config()
    with ours, supervisor, ours.makefile("wb", buffering=0) as channel:
        structlog.configure(logger_factory=structlog.BytesLoggerFactory(file=channel))
        try:
            records = b'{"event": "[base] last line"}\n' * 300
            channel.write(records)
            waiting = asyncio.create_task(wait_until_read(timeout=5))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # nothing read yet
            read = 0
            while read < len(records) - 4096:  # the supervisor's loop, 4 KiB a turn ...
                read += len(supervisor.recv(4096))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # ... not all of it yet
            while read < len(records):
                read += len(supervisor.recv(4096))
            await asyncio.wait_for(waiting, 0.5)
        finally:
            structlog.configure(**old)


@on_virtual_clock
async def test_the_wait_ends_once_its_records_are_read_while_others_keep_writing_behind_them() -> None:
    """Other triggers' records arrive in bursts behind ours: the queue never empties, yet the wait
    ends once the supervisor has read as much as was queued when it began."""
    import socket

    import structlog

    ours, supervisor = socket.socketpair()
    old = structlog.get_config()
    with ours, supervisor, ours.makefile("wb", buffering=0) as channel:
        structlog.configure(logger_factory=structlog.BytesLoggerFactory(file=channel))
        try:
            record = b'{"event": "[base] a line"}\n'
            for _ in range(30):
                channel.write(record)  # ours, one record a write as structlog does
            waiting = asyncio.create_task(wait_until_read(timeout=5))
            supervisor.setblocking(False)
            for turn in range(80):
                if turn % 10 == 9:
                    for _ in range(10):
                        channel.write(record)  # a burst of other triggers' records
                await asyncio.sleep(0.02)
                supervisor.recv(len(record))  # the supervisor reads one record a turn
                if waiting.done():
                    break
            assert waiting.done() and turn < 60, turn  # read its 30 records, not waited for 5 s
            assert log_records._unread_bytes(ours.fileno()) > 0  # others' records still queued
        finally:
            structlog.configure(**old)


@on_virtual_clock
async def test_held_lines_wait_while_the_supervisor_is_behind_so_the_write_cannot_block() -> None:
    """A full log channel blocks the writer (the whole event loop): past half of it, held lines
    stay held, tick after tick, until the supervisor has caught up."""
    import socket

    import structlog

    ours, supervisor = socket.socketpair()
    old = structlog.get_config()
    with ours, supervisor, ours.makefile("wb", buffering=0) as channel:
        structlog.configure(logger_factory=structlog.BytesLoggerFactory(file=channel))
        try:
            assert not log_records.log_channel_busy()
            while not log_records.log_channel_busy():  # other triggers' records, unread
                channel.write(b'{"event": "[base] a line of another pod"}\n' * 20)
            records = Records()
            batcher = LineBatcher(records, RecordBudget(per_second=1, burst_seconds=0))
            batcher.add("info", "[base] x")  # spends the only token
            batcher.add("info", "[base] y")
            await asyncio.sleep(log_records.MIN_DELAY_SECONDS + 2.5 * log_records.TICK_SECONDS)
            assert records.written == [("info", "[base] x")]  # two ticks passed: still held
            supervisor.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while supervisor.recv(65536):  # the supervisor catches up
                    pass
            await asyncio.sleep(log_records.TICK_SECONDS + 0.2)
            assert records.written == [("info", "[base] x"), ("info", "[base] y")]
        finally:
            structlog.configure(**old)
