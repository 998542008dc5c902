"""kube-controller-manager does its job on the control plane the e2e tests use (issue 22).

What the operator meets on a real cluster comes from its controllers, not from the API server alone:
ResourceQuota usage (and with it quota enforcement at pod creation), PodDisruptionBudget status (and
with it evictions refused or allowed), the `default` ServiceAccount of a new namespace, garbage
collection of objects whose owner is gone, namespace deletion. Each test checks one of them through
the API, on kwok (`make e2e`) and on the real node (`make e2e-node`) alike.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from tests.e2e.conftest import ANN, wait_for_pod

pytestmark = pytest.mark.e2e

HOLD = "kpo-async.io/e2e-hold"  # a finalizer: the pod object stays readable after its deletion


async def _eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:
    """Poll ``check()`` until it returns something truthy; fail with the last value after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def _unschedulable_pod(name: str, cpu: str) -> dict[str, Any]:
    """A pod that stays Pending (no node has the label): quota counts it, no node is involved."""
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kpo-async.io/no-such-node": "true"},
            "containers": [
                {"name": "base", "image": "busybox:1.36", "resources": {"requests": {"cpu": cpu}}}
            ],
        },
    }


def _running_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A pod that runs for an hour on either node, held by a finalizer once deleted."""
    return {
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {ANN + "duration": "1h"},
            "finalizers": [HOLD],
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "base", "image": "busybox:1.36", "command": ["sleep", "3600"]}],
        },
    }


async def test_resource_quota_gets_usage_and_refuses_a_pod_over_it(admin_api, fresh_namespace):
    v1 = client.CoreV1Api(admin_api)
    ns = fresh_namespace
    await v1.create_namespaced_resource_quota(
        ns, {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2", "requests.cpu": "1"}}}
    )

    async def used() -> dict[str, str] | None:
        quota = await v1.read_namespaced_resource_quota("q", ns)
        return quota.status.used if quota.status else None

    # The resourcequota controller computes the usage; without it the quota is not even enforced.
    assert await _eventually(used, "status.used of quota q") == {"pods": "0", "requests.cpu": "0"}

    await v1.create_namespaced_pod(ns, _unschedulable_pod("p1", "400m"))
    await v1.create_namespaced_pod(ns, _unschedulable_pod("p2", "400m"))
    with pytest.raises(ApiException) as exc:
        await v1.create_namespaced_pod(ns, _unschedulable_pod("p3", "400m"))
    assert exc.value.status == 403
    message = json.loads(exc.value.body)["message"]
    assert message.startswith(
        'pods "p3" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=400m'
    )
    assert "used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1" in message

    await v1.delete_namespaced_pod("p1", ns)

    async def released() -> bool:
        return await used() == {"pods": "1", "requests.cpu": "400m"}

    await _eventually(released, "the deleted pod's usage to be released")


def _condition(pod: client.V1Pod, type_: str) -> client.V1PodCondition | None:
    return next((c for c in (pod.status.conditions or []) if c.type == type_), None)


async def _evict(v1: client.CoreV1Api, name: str, ns: str) -> None:
    await v1.create_namespaced_pod_eviction(
        name, ns, {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}}
    )


async def test_disruption_budget_gets_status_and_guards_evictions(admin_api, fresh_namespace):
    v1 = client.CoreV1Api(admin_api)
    policy = client.PolicyV1Api(admin_api)
    ns = fresh_namespace
    name = "evictee"
    await v1.create_namespaced_pod(ns, _running_pod(name, {"app": name}))
    try:
        await wait_for_pod(
            admin_api,
            ns,
            name,
            lambda p: (c := _condition(p, "Ready")) is not None and c.status == "True",
            timeout=60,
            what="Ready",
        )
        await policy.create_namespaced_pod_disruption_budget(
            ns,
            {
                "metadata": {"name": "keep-one"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": name}}},
            },
        )

        # The disruption controller counts the healthy pods: none may go.
        async def pdb_status() -> client.V1PodDisruptionBudgetStatus | None:
            pdb = await policy.read_namespaced_pod_disruption_budget("keep-one", ns)
            st = pdb.status
            return (
                st
                if st and st.observed_generation == pdb.metadata.generation and st.current_healthy
                else None
            )

        st = await _eventually(pdb_status, "status of PodDisruptionBudget keep-one")
        assert (st.current_healthy, st.desired_healthy, st.disruptions_allowed) == (1, 1, 0)
        allowed = next(c for c in st.conditions if c.type == "DisruptionAllowed")
        assert (allowed.status, allowed.reason) == ("False", "InsufficientPods")
        with pytest.raises(ApiException) as exc:
            await _evict(v1, name, ns)
        assert exc.value.status == 429
        assert json.loads(exc.value.body)["message"] == (
            "Cannot evict pod as it would violate the pod's disruption budget."
        )

        # Without the budget the eviction goes through, and the pod says why it is going away.
        await policy.delete_namespaced_pod_disruption_budget("keep-one", ns)
        await _evict(v1, name, ns)
        pod = await wait_for_pod(
            admin_api, ns, name, lambda p: p.metadata.deletion_timestamp is not None, what="deletion"
        )
        target = _condition(pod, "DisruptionTarget")
        assert target is not None, pod.status.conditions
        assert (target.status, target.reason) == ("True", "EvictionByEvictionAPI")
        assert target.message == "Eviction API: evicting"
    finally:
        try:
            await v1.patch_namespaced_pod(name, ns, [{"op": "remove", "path": "/metadata/finalizers"}])
        except ApiException as e:
            if e.status not in (404, 422):
                raise


async def test_garbage_collector_deletes_an_object_whose_owner_is_gone(admin_api, fresh_namespace):
    v1 = client.CoreV1Api(admin_api)
    ns = fresh_namespace
    owner = {"apiVersion": "v1", "kind": "Pod", "name": "gone", "uid": str(uuid.uuid4())}
    await v1.create_namespaced_config_map(ns, {"metadata": {"name": "orphan", "ownerReferences": [owner]}})
    await v1.create_namespaced_config_map(ns, {"metadata": {"name": "ownerless"}})

    async def orphan_gone() -> bool:
        try:
            await v1.read_namespaced_config_map("orphan", ns)
        except ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    await _eventually(orphan_gone, "the garbage collector to delete ConfigMap orphan", timeout=60)
    await v1.read_namespaced_config_map("ownerless", ns)  # objects without owners stay


async def test_new_namespace_is_set_up_and_its_deletion_completes(admin_api):
    v1 = client.CoreV1Api(admin_api)
    ns = f"kpo-e2e-{uuid.uuid4().hex[:8]}"
    await v1.create_namespace({"metadata": {"name": ns, "labels": {"app": "kpo-async-e2e"}}})
    try:
        # A pod sent right away may be refused: the serviceaccount controller has not made `default` yet.
        sa = await _eventually(
            lambda: _read_or_none(v1.read_namespaced_service_account, "default", ns), "ServiceAccount default"
        )
        assert sa.metadata.name == "default"
        await v1.create_namespaced_pod(ns, _unschedulable_pod("p", "10m"))
        await v1.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    finally:
        await v1.delete_namespace(ns)

    # The namespace controller empties it and removes it (without it: Terminating for ever).
    async def gone() -> bool:
        return await _read_or_none(v1.read_namespace, ns) is None

    await _eventually(gone, f"namespace {ns} to be deleted", timeout=90)


async def _read_or_none(read: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    try:
        return await read(*args)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
