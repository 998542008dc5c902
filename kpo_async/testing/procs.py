"""Process plumbing shared by the workshop's launchers and the tests: free ports, polling with
backoff, and stopping process groups (every service runs in its own session, so stopping its
group leaves nothing of it behind)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import psutil

T = TypeVar("T")


class StackError(AssertionError):
    """A service did not start, exited, or an API call failed (an AssertionError for tests)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inherited_env() -> dict[str, str]:
    """This process's environment for a child Airflow process: the caller's Airflow and pytest
    settings dropped, kpo-async's own (``AIRFLOW__KPO_ASYNC__*``) kept."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PYTEST")) or k.startswith("AIRFLOW__KPO_ASYNC__")
    }


def epoch(text: str) -> float:
    """An ISO-8601 timestamp (``Z`` or an offset) as seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wait_until(
    predicate: Callable[[], T], *, timeout: float = 30.0, what: str, first: float = 0.2, most: float = 2.0
) -> T:
    """Poll `predicate` with backoff until it returns something truthy; its value, or raise."""
    deadline = time.monotonic() + timeout
    delay = first
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(min(delay, max(0.05, deadline - time.monotonic())))
        delay = min(most, delay * 1.5)


def stop_process_group(proc: subprocess.Popen, *, grace: float = 20.0, first: int = signal.SIGTERM) -> None:
    """Signal the process's whole group, wait, then SIGKILL whatever is left of the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, first)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def stop_process_groups(procs: list[subprocess.Popen], *, grace: float = 20.0) -> None:
    """`stop_process_group` for several groups at once: SIGTERM to all, one shared grace period."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
    for proc in procs:
        stop_process_group(proc, grace=0, first=signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    """Whether a process group still has a live (non-zombie) member."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) succeeds for zombies too: look for a live member.
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                return True
    return False
