"""Log cursor arithmetic and bounded line splitting (kpo_async.logs), and how a container's
follower delivers the lines of a read from its cursor (kpo_async.log_follower, no cluster)."""

from __future__ import annotations

import logging

from kpo_async.log_follower import ContainerFollower, PodLogs
from kpo_async.logs import (
    TRUNCATION_MARKER,
    LineSplitter,
    LogCursor,
    cursors_from_str,
    cursors_to_str,
    decode_line,
    parse_timestamp,
)
from kpo_async.trigger_settings import MonitorSettings


def test_timestamps_compare_by_time_not_by_text() -> None:
    # RFC3339Nano trims trailing zeros: as text ".5Z" > ".123Z" would be right, ".1Z" < ".05Z" wrong.
    early = parse_timestamp("2026-11-27T01:02:03.05Z")
    late = parse_timestamp("2026-11-27T01:02:03.1Z")
    assert early < late
    assert parse_timestamp("2026-11-27T01:02:03Z") < early
    assert parse_timestamp("2026-11-27T01:02:03.100000000Z") == late
    assert parse_timestamp("2026-11-27T02:02:03.1+01:00") == late


def test_the_fast_parse_of_the_api_servers_form_agrees_with_the_general_one() -> None:
    for text in (
        "2026-11-27T01:02:03.123456789Z",
        "2026-11-27T01:02:03.5Z",
        "2026-11-27T01:02:03.000000001Z",
        "2026-11-27T23:59:59.999999999Z",
        "1999-12-31T23:59:59.1Z",
        "2026-11-27T01:02:03.1234567890Z",  # beyond nanoseconds: cut, as the general parse does
    ):
        # A lowercase "z" is RFC3339 too, and takes the general parse.
        assert parse_timestamp(text) == parse_timestamp(text[:-1] + "z"), text
    for bad in ("2026-11-27T01:02:03.12a4Z", "2026-11-27X01:02:03.1Z", "2026-11-27T01:02:03.Z"):
        try:
            parse_timestamp(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} parsed")


def test_since_time_is_the_whole_second() -> None:
    cursor = LogCursor(parse_timestamp("2026-11-27T01:02:03.999999999Z"), 1)
    assert cursor.since_time() == "2026-11-27T01:02:03Z"


def test_cursors_round_trip_through_their_string_form() -> None:
    cursor = LogCursor(parse_timestamp("2026-11-27T01:02:03.5Z"), 3)
    later = LogCursor(parse_timestamp("2026-11-27T01:02:04Z"), 1)
    assert cursors_to_str({"base": cursor}, "base") == "2026-11-27T01:02:03.500000000Z/3"  # the older form
    assert cursors_from_str(cursors_to_str({"base": cursor}, "base"), "base") == {"base": cursor}
    both = cursors_to_str({"base": cursor, "side": later, "new": LogCursor()}, "base")
    assert both == "base=2026-11-27T01:02:03.500000000Z/3,side=2026-11-27T01:02:04.000000000Z/1"
    assert cursors_from_str(both, "base") == {"base": cursor, "side": later}
    assert cursors_from_str(None, "base") == {} and cursors_to_str({}, "base") is None


def _log_lines(*stamps: str) -> bytes:
    return b"".join(f"{stamp} line {n}\n".encode() for n, stamp in enumerate(stamps))


def _reader(cursor: LogCursor) -> tuple[ContainerFollower, list[str]]:
    """A follower at the start of a read from `cursor` (its `_deliver` only: no cluster), and the
    lines it delivers."""
    lines: list[str] = []
    logger = logging.getLogger(__name__)
    logs = PodLogs(None, "ns", "pod", MonitorSettings(), None, logger=logger, state=lambda: None)  # type: ignore[arg-type]
    logs.line_listener = lambda _container, line: lines.append(line)
    follower = ContainerFollower(logs, "base", cursor)
    follower._repeats = cursor  # as `read` starts
    return follower, lines


async def test_resume_skips_repeated_lines_including_equal_timestamps() -> None:
    t = [f"2026-11-27T01:02:03.{n}Z" for n in (1, 2, 3)]
    # Delivered before: t0, t1, t1 (two lines sharing a timestamp). The resumed read from the
    # whole second repeats them all, then carries on with a third t1 line and t2.
    log, lines = _reader(LogCursor(parse_timestamp(t[1]), 2))
    log._deliver(LineSplitter().feed(_log_lines(t[0], t[1], t[1], t[1], t[2])))
    assert lines == ["line 3", "line 4"]
    assert log.cursor == LogCursor(parse_timestamp(t[2]), 1)


async def test_fresh_read_admits_everything() -> None:
    log, lines = _reader(LogCursor())
    stamp = "2026-11-27T01:02:03Z"
    log._deliver(LineSplitter().feed(_log_lines(stamp, stamp, stamp)))
    assert lines == ["line 0", "line 1", "line 2"]
    assert log.cursor == LogCursor(parse_timestamp(stamp), 3)


def test_splitter_bounds_memory_and_marks_truncation() -> None:
    splitter = LineSplitter(max_line_bytes=10)
    lines = splitter.feed(b"short\n" + b"x" * 25)
    lines += splitter.feed(b"y" * 5 + b"\nnext")
    lines += splitter.flush()
    assert lines == [(b"short", 0), (b"x" * 10, 20), (b"next", 0)]
    assert len(splitter._buffer) == 0
    _, text = decode_line(b"2026-11-27T01:02:03Z " + b"x" * 10, 20)
    assert text.endswith(TRUNCATION_MARKER.format(dropped=20))


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    stamp, text = decode_line(b"2026-11-27T01:02:03.000000001Z caf\xff\xfe!", 0)
    assert stamp == "2026-11-27T01:02:03.000000001Z"
    assert text == "caf\ufffd\ufffd!"


async def test_the_kubelets_container_gone_note_is_not_delivered_as_a_log_line() -> None:
    # Seen on the real node (docs/real-control-plane.md): a log read of a container the kubelet already
    # removed answers 200 with this text and no timestamp.
    log, lines = _reader(LogCursor())
    splitter = LineSplitter()
    raw = (
        b"2026-11-27T01:02:03.1Z working\n"
        b"unable to retrieve container logs for containerd://f6283f9cad1b\n"
        b"unable to retrieve nothing: an ordinary line without a timestamp\n"
    )
    log._deliver(splitter.feed(raw))
    assert lines == ["working", "unable to retrieve nothing: an ordinary line without a timestamp"]
