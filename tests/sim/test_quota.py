"""ResourceQuota: status kept by the quota controller, pod admission refusing with kube-apiserver's texts."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.testing.harness import wait_for
from kpo_async.testing.sim import SimCluster
from kpo_async.testing.sim.quota import format_quantity

from .conftest import pod_manifest, wait_phase


def _pod(name: str, script: str = "sleep 60", **resources: dict[str, str]) -> dict[str, Any]:
    body = pod_manifest(name, script, terminationGracePeriodSeconds=1)
    if resources:
        body["spec"]["containers"][0]["resources"] = resources
    return body


async def _used(v1: client.CoreV1Api, name: str = "q") -> dict[str, str] | None:
    quota = await v1.read_namespaced_resource_quota(name, "default")
    return quota.status.used if quota.status else None


async def _refusal(v1: client.CoreV1Api, body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as info:
        await v1.create_namespaced_pod("default", body)
    assert info.value.status == 403
    return json.loads(info.value.body)


async def test_quota_counts_pods_and_refuses_one_over_it(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_resource_quota(
        "default", {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2", "requests.cpu": "1"}}}
    )
    quota = await wait_for(
        lambda: v1.read_namespaced_resource_quota("q", "default"), lambda q: q.status and q.status.used
    )
    assert quota.status.hard == {"pods": "2", "requests.cpu": "1"}
    assert quota.status.used == {"pods": "0", "requests.cpu": "0"}

    await v1.create_namespaced_pod("default", _pod("p1", requests={"cpu": "400m"}))
    await v1.create_namespaced_pod("default", _pod("p2", requests={"cpu": "0.4"}))
    assert await _used(v1) == {"pods": "2", "requests.cpu": "800m"}
    status = await _refusal(v1, _pod("p3", requests={"cpu": "400m"}))
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "p3" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=400m, '
        "used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1",
        "reason": "Forbidden",
        "details": {"name": "p3", "kind": "pods"},
        "code": 403,
    }

    await v1.delete_namespaced_pod("p1", "default")
    await wait_for(lambda: _used(v1), lambda used: used == {"pods": "1", "requests.cpu": "400m"})
    status = await _refusal(v1, _pod("p4", requests={"cpu": "700m"}))
    assert status["message"] == (
        'pods "p4" is forbidden: exceeded quota: q, requested: requests.cpu=700m, '
        "used: requests.cpu=400m, limited: requests.cpu=1"
    )
    status = await _refusal(v1, _pod("p6"))
    assert status["message"] == 'pods "p6" is forbidden: failed quota: q: must specify requests.cpu for: base'

    # A pod that ends releases its share without being deleted.
    await v1.create_namespaced_pod("default", _pod("p5", "sleep 0.3", requests={"cpu": "100m"}))
    assert await _used(v1) == {"pods": "2", "requests.cpu": "500m"}
    await wait_phase(v1, "p5", ("Succeeded",))
    await wait_for(lambda: _used(v1), lambda used: used == {"pods": "1", "requests.cpu": "400m"})
    assert (await v1.read_namespaced_pod("p5", "default")).status.phase == "Succeeded"


async def test_memory_and_limits_units_and_every_missing_resource_named(v1: client.CoreV1Api) -> None:
    hard = {
        "cpu": "1500m",
        "memory": "2Gi",
        "requests.memory": "1G",
        "limits.cpu": "2000m",
        "limits.memory": "1Gi",
    }
    created = await v1.create_namespaced_resource_quota(
        "default", {"metadata": {"name": "mem"}, "spec": {"hard": hard}}
    )
    assert created.spec.hard["limits.cpu"] == "2"  # stored in canonical form
    both = {"cpu": "500m", "memory": "512Mi"}
    await v1.create_namespaced_pod(
        "default", _pod("m1", requests=both, limits={"cpu": "1", "memory": "512Mi"})
    )
    assert await _used(v1, "mem") == {
        "cpu": "500m",
        "memory": "512Mi",
        "requests.memory": "512Mi",
        "limits.cpu": "1",
        "limits.memory": "512Mi",
    }
    status = await _refusal(
        v1, _pod("m2", requests={"cpu": "100m", "memory": "600M"}, limits={"cpu": "100m", "memory": "600M"})
    )
    assert status["message"] == (
        'pods "m2" is forbidden: exceeded quota: mem, requested: limits.memory=600M,requests.memory=600M, '
        "used: limits.memory=512Mi,requests.memory=512Mi, limited: limits.memory=1Gi,requests.memory=1G"
    )
    two = _pod("m3", requests={"cpu": "100m", "memory": "1Mi"})
    two["spec"]["containers"].append({"name": "aside", "image": "alpine:3.20", "command": ["sleep", "60"]})
    status = await _refusal(v1, two)
    assert status["message"] == (
        'pods "m3" is forbidden: failed quota: mem: must specify cpu for: aside; limits.cpu for: aside,base; '
        "limits.memory for: aside,base; memory for: aside; requests.memory for: aside"
    )
    await v1.delete_namespaced_resource_quota("mem", "default")
    await v1.create_namespaced_pod("default", two)  # no quota left to refuse it


async def test_quota_rejects_bad_quantities(v1: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as info:
        await v1.create_namespaced_resource_quota(
            "default", {"metadata": {"name": "bad"}, "spec": {"hard": {"pods": "two"}}}
        )
    assert info.value.status == 400
    assert "quantities must match the regular expression" in json.loads(info.value.body)["message"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.4", "400m"),
        ("1000m", "1"),
        ("2000", "2k"),
        ("1.5", "1500m"),
        ("1536Mi", "1536Mi"),
        ("1024Mi", "1Gi"),
        ("1500M", "1500M"),
        ("100u", "100u"),
        ("0", "0"),
    ],
)
def test_quantities_print_in_canonical_form(text: str, expected: str) -> None:
    from kpo_async.testing.sim.quota import amount

    assert format_quantity(*amount(text)) == expected
    assert format_quantity(Fraction(1, 3)) == "333333334n"  # rounded up to a nano, as Quantity does


async def test_a_pod_terminating_on_a_lost_node_stops_counting_after_its_grace(
    v1: client.CoreV1Api, cluster: SimCluster
) -> None:
    await v1.create_namespaced_resource_quota(
        "default", {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1", "requests.storage": "1Gi"}}}
    )
    await v1.create_namespaced_pod("default", _pod("stuck"))
    await wait_phase(v1, "stuck", ("Running",))
    assert cluster.lose_node_of("default", "stuck") == ["default/stuck"]
    # Terminating and still charged until deletionTimestamp + grace (1 s + 1 s), as the evaluator says
    assert await _used(v1) == {"pods": "1"}  # requests.storage is the PVCs' (not counted by the sim)
    await _refusal(v1, _pod("replacement"))
    await wait_for(lambda: _used(v1), lambda used: used["pods"] == "0", timeout=5)
    assert (await v1.read_namespaced_pod("stuck", "default")).metadata.deletion_timestamp is not None
    await v1.create_namespaced_pod("default", _pod("replacement"))
    cluster.restore_node()
    await wait_phase(v1, "replacement", ("Running",))
