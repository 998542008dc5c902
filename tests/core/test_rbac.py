"""A missing permission gives a clear error naming it, leaves no pod, and doctor reports it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kpo_async.errors import PodFailedError
from kpo_async.sim import SimCluster, SimConfig
from tests.core.test_operator import list_pods, make_operator, run_task


@pytest.fixture(scope="module")
def sim_without_exec():
    with SimCluster(SimConfig(denied=frozenset({"create pods/exec"}))).in_thread() as cluster:
        yield cluster


def test_missing_exec_permission_names_it_and_cleans_up(sim_without_exec) -> None:
    op = make_operator(
        sim_without_exec,
        name="no-exec",
        do_xcom_push=True,
        cmds=["sh", "-c"],
        arguments=["echo '{}' > /airflow/xcom/return.json"],
    )
    with pytest.raises(PodFailedError) as info:
        run_task(op)
    assert "pods/exec" in str(info.value)
    assert "docs/rbac.md" in str(info.value)
    assert list_pods(sim_without_exec) == []


def test_doctor_reports_the_missing_permission(sim_without_exec) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kpo_async.cli", "doctor", "--config-file", sim_without_exec.kubeconfig_path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "[MISSING] create pods/exec" in result.stdout
    assert "[ok] create pods" in result.stdout
    assert "missing permission: create pods/exec" in result.stderr


def test_doctor_is_happy_with_full_permissions(sim_thread) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kpo_async.cli", "doctor", "--config-file", sim_thread.kubeconfig_path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: everything the operator needs is in place" in result.stdout
