"""Fixtures for operator/trigger tests against the embedded cluster over loopback.

The task is driven as Airflow does by `kpo_async.testing.harness`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kpo_async.testing.sim import SimCluster, SimConfig


@pytest.fixture(scope="module")
def sim_thread() -> Iterator[SimCluster]:
    """An embedded cluster on its own thread, for sync code such as `operator.execute`."""
    with SimCluster(SimConfig()).in_thread() as cluster:
        yield cluster
