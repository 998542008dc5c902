"""`kpo-async doctor` on the embedded cluster: the namespace check and messages in doctor's terms."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kpo_async import doctor
from kpo_async.testing.sim import SimCluster, SimConfig


@pytest.fixture(scope="module")
def sim_without_namespace_reads() -> Iterator[SimCluster]:
    """An identity bound by a Role only: it may not read Namespace objects."""
    with SimCluster(SimConfig(denied=frozenset({"get namespaces"}))).in_thread() as cluster:
        yield cluster


def run_doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = doctor.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_namespace_that_does_not_exist_fails_naming_it_and_the_fix(sim_thread, capsys) -> None:
    code, out, err = run_doctor(
        capsys, "--config-file", sim_thread.kubeconfig_path, "--namespace", "nosuchns", "--json"
    )
    assert code == 1
    assert "namespace: nosuchns (NOT FOUND)" in out
    assert "OK" not in out and "[ok]" not in out
    (problem,) = json.loads(out.splitlines()[-2])["problems"]
    assert problem.startswith("namespace 'nosuchns' does not exist on this cluster. Fix: ")
    assert "kubectl create namespace nosuchns" in problem and "--namespace" in problem
    assert f"PROBLEM: {problem}" in err


def test_an_existing_namespace_is_reported_and_checked(sim_thread, capsys) -> None:
    code, out, err = run_doctor(capsys, "--config-file", sim_thread.kubeconfig_path, "--namespace", "airflow")
    assert code == 0, out + err
    assert "namespace: airflow (exists)" in out
    assert out.count("[ok]") == len(doctor.REQUIRED_PERMISSIONS)
    assert out.rstrip().endswith("OK: everything the operator needs is in place")


def test_without_access_to_namespace_objects_a_dry_run_pod_tells(sim_without_namespace_reads, capsys) -> None:
    kubeconfig = sim_without_namespace_reads.kubeconfig_path
    code, out, err = run_doctor(capsys, "--config-file", kubeconfig, "--namespace", "nosuchns")
    assert code == 1
    assert "PROBLEM: namespace 'nosuchns' does not exist on this cluster" in err

    code, out, err = run_doctor(capsys, "--config-file", kubeconfig, "--namespace", "default")
    assert code == 0, out + err
    assert "namespace: default (exists; cannot read the Namespace object)" in out
    from tests.core.test_operator import list_pods

    assert list_pods(sim_without_namespace_reads) == []  # the dry run created nothing


def test_connection_problems_name_doctors_flags(sim_thread, capsys) -> None:
    code, out, err = run_doctor(capsys, "--config-file", sim_thread.kubeconfig_path, "--context", "nope")
    assert code == 1
    assert "PROBLEM: Invalid --context: context 'nope' is not in kubeconfig" in err
    assert "cluster_context" not in err and "docs/" not in err + out
    assert '"Connections and kubeconfig" in the kpo-async documentation' in err

    code, out, err = run_doctor(capsys, "--config-file", "/nonexistent/kubeconfig")
    assert code == 1
    assert "PROBLEM: Invalid --config-file: kubeconfig '/nonexistent/kubeconfig' does not exist" in err
    assert "pass --conn-id" in err and "kubernetes_conn_id" not in err


def test_an_identity_allowed_nothing_in_the_namespace_is_told_to_bind_a_role(capsys) -> None:
    required = doctor.REQUIRED_PERMISSIONS
    nothing = frozenset(f"{verb} {resource}{'/' + sub if sub else ''}" for verb, resource, sub, _ in required)
    with SimCluster(SimConfig(denied=nothing)).in_thread() as cluster:
        kubeconfig = cluster.kubeconfig_path
        code, out, err = run_doctor(capsys, "--config-file", kubeconfig, "--namespace", "airflow")
    assert code == 1
    assert out.count("[MISSING]") == len(doctor.REQUIRED_PERMISSIONS)
    assert "PROBLEM: this identity may do nothing in namespace airflow: no Role there is bound to it." in err
    assert '"RBAC: the least privilege kpo-async needs" in the kpo-async documentation' in out
