"""Shared fixtures. Airflow reads its configuration at import, so its home is set up first."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Every test session gets its own throw-away Airflow home (SQLite metadata DB, logs).
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="kpo-async-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "example_dags")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
# Tests must never pick up a developer's own cluster by accident.
os.environ["KUBECONFIG"] = str(_AIRFLOW_HOME / "no-default-kubeconfig")

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import signal  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402

import pytest  # noqa: E402

from kpo_async.testing.sim import SimCluster, SimConfig  # noqa: E402

#: How a simulator process shows up in /proc/<pid>/cmdline.
_SIM_COMMAND = b"kpo_async.testing.sim"


def _sim_processes() -> set[int]:
    """Simulator processes that are children of this test process."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and _SIM_COMMAND in cmdline and b"<defunct>" not in cmdline:
            found.add(int(entry.name))
    return found


def _simulator_shutting_down(task: asyncio.Task[object]) -> bool:
    """A task of the embedded simulator's own kubelet: its teardown winds containers down in the
    background (its business, reported to its owners), not a leak of the code under test."""
    code = getattr(task.get_coro(), "cr_code", None)
    return "/kpo_async/testing/sim/" in getattr(code, "co_filename", "")


@pytest.fixture(autouse=True)
async def _nothing_left_behind() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks or simulator processes behind.

    Autouse fixtures are set up before, and torn down after, the test's own fixtures, so what a
    wider-scoped fixture (a module's simulator) started is there before and after alike.
    """
    processes = _sim_processes()
    tasks = asyncio.all_tasks()
    yield
    new = asyncio.all_tasks() - tasks - {asyncio.current_task()}
    left = {t for t in new if not _simulator_shutting_down(t)}  # not waited for: the simulator's own
    if left:  # a task cancelled by a fixture's teardown may take a moment to finish
        await asyncio.wait(left, timeout=5)
    left = {t for t in left if not t.done()}
    left_processes = _sim_processes() - processes
    for task in left:
        task.cancel()
    for pid in left_processes:  # stop what the test left, then fail it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    assert not left, f"the test left asyncio tasks running: {sorted(t.get_name() for t in left)}"
    assert not left_processes, f"the test left simulator processes running: {sorted(left_processes)}"


@pytest.fixture
async def sim():
    """A fresh embedded cluster on loopback (TLS + token auth), in the test's event loop."""
    async with SimCluster(SimConfig()) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _AIRFLOW_HOME
