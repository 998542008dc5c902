"""The compat suite's comparison helpers: the official operator's announced re-reads, the Python
decorators' bootstrap (trace, traceback frames, program env vars)."""

from __future__ import annotations

from tests.compat.compare import (
    normalized_pod,
    official_container_lines,
    without_bootstrap_trace,
    without_traceback_frames,
)

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


def test_the_official_decorators_bootstrap_trace_is_dropped_and_the_functions_lines_kept() -> None:
    lines = [
        ("base", "+ python -c 'import base64, os;x = ...'"),
        ("base", "+ mkdir -p /airflow/xcom"),
        ("base", "+ :"),
        ("base", "+ python /tmp/script.py /tmp/script.in /dev/null"),
        ("base", "+ a line the function printed"),
        ("base", "hello"),
    ]
    assert without_bootstrap_trace(lines) == [("base", "+ a line the function printed"), ("base", "hello")]


def test_traceback_frames_are_dropped_header_and_exception_kept() -> None:
    lines = [
        ("base", "Traceback (most recent call last):"),
        ("base", '  File "/tmp/script.py", line 25, in <module>'),
        ("base", "    res = f()"),
        ("other", "  indented, another container"),
        ("base", "ValueError: boom"),
        ("base", "  indented, after the traceback"),
    ]
    assert without_traceback_frames(lines) == [
        ("base", "Traceback (most recent call last):"),
        ("other", "  indented, another container"),
        ("base", "ValueError: boom"),
        ("base", "  indented, after the traceback"),
    ]


def test_a_python_decorators_program_is_removed_from_the_pod_the_rest_compared() -> None:
    def pod(command: list[str], env: list[dict[str, str]]) -> dict:
        container = {"name": "base", "image": "python:3.12-slim", "command": command, "env": env}
        return {"metadata": {"name": "p-abcdefgh"}, "spec": {"containers": [container]}}

    official = pod(
        ["bash", "-cx", "..."], [{"name": "A", "value": "1"}, {"name": "__PYTHON_SCRIPT", "value": "x"}]
    )
    ours = pod(
        ["python", "-c", "..."],
        [{"name": "A", "value": "1"}, {"name": "__KPO_ASYNC_PYTHON_SCRIPT", "value": "y"}],
    )
    assert normalized_pod(official) == normalized_pod(ours)
    assert normalized_pod(official)["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    plain = pod(["bash", "-cx", "..."], [{"name": "A", "value": "1"}])
    assert normalized_pod(plain)["spec"]["containers"][0]["command"] == ["bash", "-cx", "..."]


def test_only_kpo_asyncs_finalizer_is_left_out_of_the_comparison() -> None:
    def pod(*finalizers: str) -> dict:
        metadata = {"name": "p-abcdefgh", **({"finalizers": list(finalizers)} if finalizers else {})}
        return {"metadata": metadata, "spec": {"containers": [{"name": "base", "image": "alpine:3.20"}]}}

    assert normalized_pod(pod("kpo-async.io/task-seen")) == normalized_pod(pod())
    users = normalized_pod(pod("kpo-async.io/task-seen", "example.com/keep"))
    assert users["metadata"]["finalizers"] == ["example.com/keep"]
    assert normalized_pod(pod("example.com/keep")) != normalized_pod(pod())
