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

import pytest  # noqa: E402

from kpo_async.testing.sim import SimCluster, SimConfig  # noqa: E402


@pytest.fixture
async def sim():
    """A fresh embedded cluster on loopback (TLS + token auth), in the test's event loop."""
    async with SimCluster(SimConfig()) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _AIRFLOW_HOME
