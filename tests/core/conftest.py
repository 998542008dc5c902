"""Helpers for operator/trigger tests against the embedded cluster over loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kpo_async.clients import close_shared_clients
from kpo_async.testing.sim import SimCluster, SimConfig
from kpo_async.watch import stop_shared_watchers

BEHAVIOR = "sim.kpo-async.io/behavior"


@dataclass
class FakeTI:
    """The few task-instance attributes the operator reads from its context."""

    dag_id: str = "test_dag"
    task_id: str = "pod_task"
    run_id: str = "manual__2026-11-27T00:00:00+00:00"
    map_index: int = -1
    try_number: int = 1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def context_for(ti: FakeTI) -> dict[str, Any]:
    return {"ti": ti, "task_instance": ti}


def behavior(**spec: Any) -> dict[str, str]:
    return {BEHAVIOR: json.dumps(spec)}


@pytest.fixture(scope="module")
def sim_thread() -> Iterator[SimCluster]:
    """An embedded cluster on its own thread, for sync code such as `operator.execute`."""
    with SimCluster(SimConfig()).in_thread() as cluster:
        yield cluster


async def _first_event(trigger) -> dict[str, Any]:
    try:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")
    finally:
        await trigger.cleanup()
        await stop_shared_watchers()
        await close_shared_clients()


def run_trigger(trigger, timeout: float = 60) -> dict[str, Any]:
    """Run a trigger to its first event in a fresh loop, as the triggerer would."""
    return asyncio.run(asyncio.wait_for(_first_event(trigger), timeout))
