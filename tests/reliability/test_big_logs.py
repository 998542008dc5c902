"""Big logs: ~100 MB of output, lines longer than 64 KiB, no final newline, invalid UTF-8.

The embedded cluster runs in its own process here, so `tracemalloc` measures the trigger alone: its
memory must stay bounded whatever the log's size (the peak is compared with the log's size), and
the log must be delivered intact or explicitly truncated with `kpo_async.logs.TRUNCATION_MARKER`,
with exact line counts.
"""

from __future__ import annotations

import contextlib
import re
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog

from kpo_async.errors import PodFailedError
from kpo_async.logs import DEFAULT_MAX_LINE_BYTES, TRUNCATION_MARKER
from kpo_async.testing.logcapture import capture_logs
from tests.reliability.conftest import (
    FakeTI,
    behavior,
    context_for,
    live_pods,
    make_operator,
    run_trigger,
    stored_kwargs,
    submit,
    trigger_from,
)

#: What the kubelet puts before each line with timestamps=true: RFC 3339 with 9 digits and a space.
TIMESTAMP_PREFIX = len("2026-11-27T01:02:03.123456789Z ")
#: The longest line text delivered intact; longer lines are cut to this and marked.
MAX_TEXT = DEFAULT_MAX_LINE_BYTES - TIMESTAMP_PREFIX
MB = 1024 * 1024
_MARKER = re.compile(re.escape(TRUNCATION_MARKER).replace(r"\{dropped\}", r"(\d+)") + "$")


@dataclass
class Delivered:
    """A compact account of the delivered lines (keeping 100 MB of lines would defeat the test).

    Line i of a behaviour pod starts with ``line {i}``; `out_of_order` counts lines that did not.
    """

    count: int = 0
    out_of_order: int = 0
    lengths: Counter[int] = field(default_factory=Counter)
    #: Bytes dropped per truncated line (from the marker); None for a line delivered intact.
    dropped: Counter[int | None] = field(default_factory=Counter)
    full: list[str] = field(default_factory=list)
    keep_full: bool = False

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        # Under load several lines share one record, one per line (kpo_async.log_records).
        for line in str(event_dict.get("event", "")).split("\n"):
            if line.startswith("[base] "):
                self.count_line(line[len("[base] ") :])
        raise structlog.DropEvent

    def count_line(self, text: str) -> None:
        self.count += 1
        head = f"line {self.count}"
        if not text.startswith(head) or text[len(head) : len(head) + 1] not in (".", " ", ""):
            self.out_of_order += 1
        marker = _MARKER.search(text)
        self.lengths[len(text)] += 1
        self.dropped[int(marker.group(1)) if marker else None] += 1
        if self.keep_full:
            self.full.append(text)


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Yields a list that holds tracemalloc's peak (bytes) once the block ends."""
    result: list[int] = []
    tracemalloc.start()
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def follow(
    sim_process, name: str, spec: dict[str, Any], *, keep_full: bool = False
) -> tuple[dict, Delivered, int]:
    """Submit on the worker, follow on the 'triggerer' under tracemalloc, finalize on the worker."""
    op = make_operator(sim_process, name, annotations=behavior(**spec), startup_timeout_seconds=60)
    ti = FakeTI(name)
    deferred = submit(op, ti)
    trigger = trigger_from(*stored_kwargs(deferred))
    delivered = Delivered(keep_full=keep_full)
    with capture_logs(processors=[delivered]), peak_memory() as peak:
        event = run_trigger(trigger, timeout=240)
    with contextlib.suppress(PodFailedError):
        op.execute_complete(context_for(ti), event)
    assert live_pods(sim_process, name) == []
    print(f"{name}: {delivered.count} lines, tracemalloc peak {peak[0] / MB:.1f} MB")
    return event, delivered, peak[0]


def test_100_mb_of_long_lines_streams_in_bounded_memory_and_marks_each_truncation(sim_process) -> None:
    line_bytes, lines = 100_000, 1000  # 100 MB of log, every line over the 64 KiB line cap
    event, delivered, peak = follow(
        sim_process,
        "big-log",
        {"duration_seconds": 2, "log_lines_per_second": lines / 2, "log_line_bytes": line_bytes},
    )
    assert event["status"] == "success"
    assert delivered.count == lines
    assert delivered.out_of_order == 0
    dropped = line_bytes - MAX_TEXT
    assert delivered.dropped == {dropped: lines}  # every line cut, and says by how much
    assert delivered.lengths == {MAX_TEXT + len(TRUNCATION_MARKER.format(dropped=dropped)): lines}
    assert peak < 20 * MB, f"the trigger peaked at {peak / MB:.1f} MB following a 100 MB log"


def test_many_short_lines_are_delivered_intact_in_bounded_memory(sim_process) -> None:
    lines = 20_000  # 400 bytes each: 8 MB
    event, delivered, peak = follow(
        sim_process,
        "many-lines",
        {"duration_seconds": 1, "log_lines_per_second": lines, "log_line_bytes": 400},
    )
    assert event["status"] == "success"
    assert delivered.count == lines
    assert delivered.out_of_order == 0
    assert delivered.lengths == {400: lines} and delivered.dropped == {None: lines}
    assert peak < 5 * MB, f"the trigger peaked at {peak / MB:.1f} MB following an 8 MB log"


def test_lines_at_the_cap_are_intact_and_one_byte_over_is_marked(sim_process) -> None:
    spec = {"duration_seconds": 0.5, "log_lines_per_second": 6, "log_line_bytes": MAX_TEXT}
    _, at_cap, _ = follow(sim_process, "at-cap", spec)
    assert at_cap.count == 3 and at_cap.lengths == {MAX_TEXT: 3} and at_cap.dropped == {None: 3}
    _, over, _ = follow(sim_process, "over-cap", {**spec, "log_line_bytes": MAX_TEXT + 1})
    assert over.count == 3 and over.dropped == {1: 3} and over.out_of_order == 0


def test_long_lines_with_invalid_utf8_and_no_final_newline(sim_process) -> None:
    line_bytes, lines = 200_000, 5
    event, delivered, peak = follow(
        sim_process,
        "no-newline",
        {
            "duration_seconds": 1,
            "log_lines_per_second": lines,
            "log_line_bytes": line_bytes,
            "log_invalid_utf8": True,
            "log_final_newline": False,
        },
        keep_full=True,
    )
    assert event["status"] == "success"
    assert delivered.count == lines  # the last line, without its newline, is delivered too
    for i, text in enumerate(delivered.full, start=1):
        raw = (f"line {i}".encode() + b" \xff\xfe").ljust(line_bytes, b".")
        kept = raw[:MAX_TEXT]
        expected = kept.decode("utf-8", "replace") + TRUNCATION_MARKER.format(dropped=len(raw) - len(kept))
        assert text == expected, i
    assert peak < 20 * MB


def test_invalid_utf8_in_short_lines_is_replaced_not_fatal(sim_process) -> None:
    event, delivered, _ = follow(
        sim_process,
        "bad-utf8",
        {"duration_seconds": 1, "log_lines_per_second": 20, "log_invalid_utf8": True, "exit_code": 3},
        keep_full=True,
    )
    assert event["status"] == "failed" and event["exit_code"] == 3
    assert delivered.full == [f"line {i} \ufffd\ufffd" for i in range(1, 21)]
    assert event["log_tail"][-1] == "line 20 \ufffd\ufffd"  # the failure message quotes the tail
