"""Fixtures for the Airflow tests: real Airflow 3 processes against the embedded cluster."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _keep() -> bool:
    return os.environ.get("KPO_ASYNC_KEEP_TEST_HOME", "") not in ("", "0", "false")


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A throw-away directory for one module's Airflow home, cluster and logs."""
    path = Path(tempfile.mkdtemp(prefix="kpo-async-airflow-it-"))
    yield path
    if _keep():
        print(f"\nkept {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tails of the Airflow services' logs to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        harness = item.funcargs.get("services") if hasattr(item, "funcargs") else None
        if harness is not None and hasattr(harness, "tails"):
            try:
                report.sections.append(("Airflow service logs (tails)", harness.tails(60)))
            except Exception as exc:  # diagnostics must not hide the failure
                report.sections.append(("Airflow service logs (tails)", f"unavailable: {exc}"))
