"""The compat suite's log comparison helper: the official operator's announced re-reads."""

from __future__ import annotations

from tests.compat.compare import official_container_lines

WARN = (
    "2026-11-30T03:23:39.263487Z [warning  ] Pod p-1 log read interrupted but container base still running. "
    "Logs generated in the last one second might get duplicated. [x.PodManager] loc=pod_manager.py:1"
)


def line(container: str, msg: str) -> str:
    return f"2026-11-30T03:23:39.2Z [info     ] [{container}] {msg} [x.PodManager] loc=pod_manager.py:508"


def test_the_repeated_tail_after_a_reread_warning_is_dropped() -> None:
    out = "\n".join([line("base", "a"), line("base", "b"), line("base", "c"), WARN, line("base", "b")])
    out += "\n" + "\n".join([line("base", "c"), line("base", "d")])
    assert official_container_lines(out) == [("base", "a"), ("base", "b"), ("base", "c"), ("base", "d")]


def test_without_a_warning_repeated_lines_are_kept() -> None:
    out = "\n".join([line("base", "a"), line("base", "a"), line("helper", "a")])
    assert official_container_lines(out) == [("base", "a"), ("base", "a"), ("helper", "a")]


def test_a_warning_for_another_container_removes_nothing_here() -> None:
    other = WARN.replace("container base", "container helper")
    out = "\n".join([line("base", "a"), other, line("base", "a")])
    assert official_container_lines(out) == [("base", "a"), ("base", "a")]
