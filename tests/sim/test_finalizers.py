"""Finalizers on pods, as kube-apiserver and the kubelet handle them: a deleted pod with finalizers
is stopped and ended (terminal phase) but stays until its last finalizer is removed; the Eviction API,
pod GC and a delete of an unscheduled pod behave the same way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.testing.harness import wait_for
from kpo_async.testing.sim import SimCluster
from kpo_async.testing.sim.control import SimControl

from .conftest import pod_manifest, wait_phase

HOLD, OTHER = "kpo-async.io/task-seen", "example.com/other"
STRATEGIC = "application/strategic-merge-patch+json"


def _held(name: str, *finalizers: str, **spec: Any) -> dict[str, Any]:
    body = pod_manifest(name, "sleep 60", terminationGracePeriodSeconds=1, **spec)
    body["metadata"]["finalizers"] = list(finalizers or [HOLD])
    return body


async def _raw(v1: client.CoreV1Api, name: str) -> dict[str, Any] | None:
    """The pod as the API server returns it, also while it is being deleted; None once it is gone."""
    response = await v1.read_namespaced_pod(name, "default", _preload_content=False)
    body: dict[str, Any] = await response.json()
    return None if response.status == 404 else body


async def _remove(v1: client.CoreV1Api, name: str, *finalizers: str) -> Any:
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": list(finalizers)}}
    return await v1.patch_namespaced_pod(name, "default", patch, _content_type=STRATEGIC)  # type: ignore[call-arg]


async def _ended(v1: client.CoreV1Api, name: str) -> dict[str, Any]:
    """The pod once its kubelet is done with it: ended, and its final delete made (grace period 0)."""

    def done(pod: dict[str, Any] | None) -> bool:
        return pod is not None and pod["metadata"].get("deletionGracePeriodSeconds") == 0

    pod = await wait_for(lambda: _raw(v1, name), done, timeout=10)
    assert pod is not None and pod["status"]["phase"] in ("Failed", "Succeeded")
    return pod


async def test_a_deleted_pod_with_a_finalizer_ends_and_stays_until_it_is_removed(
    v1: client.CoreV1Api,
) -> None:
    await v1.create_namespaced_pod("default", _held("held", HOLD, OTHER))
    await wait_phase(v1, "held", ("Running",))
    await v1.delete_namespaced_pod("held", "default")
    pod = await _ended(v1, "held")
    assert pod["status"]["phase"] == "Failed"  # the kubelet ends a deleted pod
    assert pod["metadata"]["deletionTimestamp"] and pod["metadata"]["deletionGracePeriodSeconds"] == 0
    base = pod["status"]["containerStatuses"][0]["state"]
    assert "terminated" in base
    await asyncio.sleep(0.3)
    assert await _raw(v1, "held") is not None  # held

    with pytest.raises(ApiException) as refused:  # no new finalizer on a pod being deleted
        await v1.patch_namespaced_pod(
            "held", "default", {"metadata": {"finalizers": [HOLD, OTHER, "x.io/y"]}}
        )
    assert refused.value.status == 422 and "no new finalizers" in refused.value.body

    await _remove(v1, "held", HOLD)  # only ours: the other one still holds it
    pod = await _raw(v1, "held")
    assert pod is not None and pod["metadata"]["finalizers"] == [OTHER]
    await _remove(v1, "held", OTHER, "not.there/either")
    assert await _raw(v1, "held") is None


async def test_removing_the_finalizer_of_a_live_pod_changes_nothing_else(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", _held("live"))
    await wait_phase(v1, "live", ("Running",))
    await _remove(v1, "live", HOLD)
    await _remove(v1, "live", HOLD)  # a pod without it: nothing to do
    pod = await _raw(v1, "live")
    assert pod is not None and "finalizers" not in pod["metadata"]
    assert pod["status"]["phase"] == "Running" and not pod["metadata"].get("deletionTimestamp")
    # A JSON merge patch knows no directives: the key is no field, and the list stays.
    await v1.create_namespaced_pod("default", _held("merge"))
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [HOLD]}}
    await v1.patch_namespaced_pod("merge", "default", patch, _content_type="application/merge-patch+json")  # type: ignore[call-arg]
    merged = await _raw(v1, "merge")
    assert merged is not None and merged["metadata"]["finalizers"] == [HOLD]


async def test_a_finalizer_released_while_the_pod_terminates_lets_it_go_once_stopped(
    v1: client.CoreV1Api,
) -> None:
    body = _held("slow")
    body["spec"]["containers"][0]["command"] = ["sh", "-c", "trap '' TERM; sleep 60"]
    body["spec"]["terminationGracePeriodSeconds"] = 2
    await v1.create_namespaced_pod("default", body)
    await wait_phase(v1, "slow", ("Running",))
    await v1.delete_namespaced_pod("slow", "default")
    await _remove(v1, "slow", HOLD)
    pod = await _raw(v1, "slow")
    assert pod is not None  # its containers still run: gone only once the kubelet is done
    await wait_for(lambda: _raw(v1, "slow"), lambda p: p is None, timeout=10)


async def test_an_evicted_pod_with_a_finalizer_keeps_its_disruption_target(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", _held("evicted"))
    await wait_phase(v1, "evicted", ("Running",))
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "evicted"}}
    await v1.create_namespaced_pod_eviction("evicted", "default", eviction)
    pod = await _ended(v1, "evicted")
    target = next(c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (target["status"], target["reason"]) == ("True", "EvictionByEvictionAPI")
    assert pod["status"]["phase"] == "Failed" and pod["metadata"]["deletionTimestamp"]
    await _remove(v1, "evicted", HOLD)
    assert await _raw(v1, "evicted") is None


async def test_unscheduled_and_node_gone_pods_with_a_finalizer_are_held(
    v1: client.CoreV1Api, cluster: SimCluster
) -> None:
    await v1.create_namespaced_pod("default", _held("nowhere", nodeSelector={"no": "such-node"}))
    await v1.delete_namespaced_pod("nowhere", "default")
    pod = await _raw(v1, "nowhere")
    assert pod is not None and pod["metadata"]["deletionGracePeriodSeconds"] == 0
    # Ended as kube-controller-manager's pod GC ends a terminating pod that no node runs.
    await wait_for(lambda: _raw(v1, "nowhere"), lambda p: p is not None and p["status"]["phase"] == "Failed")
    await _remove(v1, "nowhere", HOLD)
    assert await _raw(v1, "nowhere") is None

    await v1.create_namespaced_pod("default", _held("on-node"))
    await wait_phase(v1, "on-node", ("Running",))
    async with SimControl(cluster.kubeconfig_path) as ctl:
        assert await ctl.delete_node("sim-node") == ["default/on-node"]
        pod = await _raw(v1, "on-node")
        assert pod is not None and pod["status"]["phase"] == "Failed"
        assert pod["metadata"]["deletionTimestamp"]
        await _remove(v1, "on-node", HOLD)
        assert await _raw(v1, "on-node") is None
        await ctl.restore_node("sim-node")
