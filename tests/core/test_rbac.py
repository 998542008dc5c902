"""A missing permission gives a clear error naming it, leaves no pod, and doctor reports it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kpo_async.errors import PodFailedError
from kpo_async.testing.harness import make_operator
from kpo_async.testing.logcapture import capture_logs
from kpo_async.testing.sim import SimCluster, SimConfig
from tests.core.test_operator import list_pods, run_task


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


def test_a_missing_log_permission_is_said_once_and_the_task_still_succeeds() -> None:
    with SimCluster(SimConfig(denied=frozenset({"get pods/log"}))).in_thread() as sim:
        op = make_operator(sim, name="no-log", cmds=["sh", "-c"], arguments=["echo a line"])
        with capture_logs() as logs:
            run_task(op)
    warnings = [str(e.get("event")) for e in logs if "pods/log" in str(e.get("event"))]
    assert len(warnings) == 1, warnings
    assert "container base" in warnings[0] and "'get' verb" in warnings[0] and "docs/rbac.md" in warnings[0]


def test_doctor_reports_the_missing_permission(sim_without_exec) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kpo_async.cli", "doctor", "--config-file", sim_without_exec.kubeconfig_path],
        capture_output=True,
        text=True,
        timeout=180,  # a hang guard only: importing Airflow is slow on a loaded machine
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
        timeout=180,  # a hang guard only: importing Airflow is slow on a loaded machine
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: everything the operator needs is in place" in result.stdout


def test_an_admission_refusal_is_not_reported_as_a_missing_role_rule(sim_thread) -> None:
    """PodSecurity (any admission refusal but a full quota) fails at once, with its own message."""
    from kpo_async.errors import KpoAsyncError, PermissionDeniedError
    from kpo_async.testing.harness import FakeTI, context_for
    from kpo_async.testing.sim import Fault

    refusal = (
        'pods "refused-pss" is forbidden: violates PodSecurity "restricted:latest": '
        'allowPrivilegeEscalation != false (container "base" must set '
        "securityContext.allowPrivilegeEscalation=false)"
    )
    fault_id = sim_thread.call(
        sim_thread.faults.add,
        Fault(method="POST", path=r"/namespaces/default/pods$", status=403, message=refusal, times=1),
    )
    op = make_operator(sim_thread, name="refused-pss")
    try:
        with pytest.raises(KpoAsyncError) as info:
            op.execute(context_for(FakeTI(task_id=op.task_id)))
    finally:
        sim_thread.call(sim_thread.faults.remove, fault_id)
    assert not isinstance(info.value, PermissionDeniedError)
    assert "violates PodSecurity" in str(info.value)
    assert list_pods(sim_thread) == []
