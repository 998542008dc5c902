"""How the cluster takes pods away, as a watcher sees it: DisruptionTarget from the Eviction API, the
kubelet, scheduler preemption, the taint manager (lost node) and pod GC (deleted node)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.testing.harness import wait_for
from kpo_async.testing.sim import SimCluster
from kpo_async.testing.sim.control import SimControl

from .conftest import pod_manifest, wait_phase

NODE = "sim-node"


async def _watch(
    v1: client.CoreV1Api, name: str, until: str = "DELETED", timeout: float = 20
) -> asyncio.Future[Any]:
    """Record every watch event (type, raw pod) of pod `name` from now until one of type `until`."""
    events: list[tuple[str, dict[str, Any]]] = []
    rv = (await v1.list_namespaced_pod("default")).metadata.resource_version

    async def run() -> list[tuple[str, dict[str, Any]]]:
        w = watch.Watch()
        try:
            async for ev in w.stream(
                v1.list_namespaced_pod,
                "default",
                field_selector=f"metadata.name={name}",
                resource_version=rv,
                timeout_seconds=30,
            ):
                events.append((ev["type"], ev["raw_object"]))
                if ev["type"] == until:
                    break
        finally:
            await w.close()
        return events

    return asyncio.ensure_future(asyncio.wait_for(run(), timeout))


def _target(pod: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == "DisruptionTarget"), None)


def _first_with_target(events: list[tuple[str, dict[str, Any]]]) -> int:
    return next(i for i, (_, pod) in enumerate(events) if _target(pod) is not None)


def _sleeper(name: str, cpu: str | None = None, **spec: Any) -> dict[str, Any]:
    body = pod_manifest(name, "sleep 60", terminationGracePeriodSeconds=1, **spec)
    if cpu:
        body["spec"]["containers"][0]["resources"] = {"requests": {"cpu": cpu}}
    return body


async def _events(v1: client.CoreV1Api, name: str) -> list[Any]:
    return (await v1.list_namespaced_event("default", field_selector=f"involvedObject.name={name}")).items


async def test_eviction_api_marks_the_pod_then_deletes_it_gracefully(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", _sleeper("e1"))
    await wait_phase(v1, "e1", ("Running",))
    seen = await _watch(v1, "e1")
    await v1.create_namespaced_pod_eviction(
        "e1", "default", {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "e1"}}
    )
    events = await seen
    i = _first_with_target(events)
    kind, pod = events[i]
    target = _target(pod)
    assert kind == "MODIFIED" and target is not None
    assert (target["status"], target["reason"], target["message"]) == (
        "True",
        "EvictionByEvictionAPI",
        "Eviction API: evicting",
    )
    assert target["lastTransitionTime"]
    assert "deletionTimestamp" not in pod["metadata"]  # the condition comes first, then the delete
    terminating = next(p for _, p in events[i:] if p["metadata"].get("deletionTimestamp"))
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 1
    assert events[-1][0] == "DELETED" and _target(events[-1][1]) == target


async def test_kubelet_eviction_says_termination_by_kubelet(
    v1: client.CoreV1Api, cluster: SimCluster
) -> None:
    await v1.create_namespaced_pod("default", _sleeper("k1"))
    await wait_phase(v1, "k1", ("Running",))
    async with SimControl(cluster.kubeconfig_path) as ctl:
        await ctl.evict("default", "k1", message="The node was low on resource: ephemeral-storage. ")
    pod = await wait_phase(v1, "k1", ("Failed",))
    target = next(c for c in pod.status.conditions if c.type == "DisruptionTarget")
    assert (target.status, target.reason) == ("True", "TerminationByKubelet")
    assert target.message == "The node was low on resource: ephemeral-storage. "
    assert pod.status.reason == "Evicted"


async def test_preemption_evicts_the_lowest_priority_pod_and_schedules_the_preemptor(
    v1: client.CoreV1Api, api: client.ApiClient, cluster: SimCluster
) -> None:
    async with SimControl(cluster.kubeconfig_path) as ctl:
        assert (await ctl.set_node_allocatable(NODE, {"cpu": "2"}))["cpu"] == "2"
    node = await v1.read_node(NODE)
    assert node.status.allocatable["cpu"] == "2" and node.status.capacity["cpu"] == "2"
    sched = client.SchedulingV1Api(api)
    await sched.create_priority_class({"metadata": {"name": "low"}, "value": 1000})
    await sched.create_priority_class({"metadata": {"name": "high"}, "value": 100000})
    await v1.create_namespaced_pod("default", _sleeper("least", cpu="1"))  # priority 0
    await v1.create_namespaced_pod("default", _sleeper("lower", cpu="1", priorityClassName="low"))
    await wait_phase(v1, "least", ("Running",))
    await wait_phase(v1, "lower", ("Running",))
    seen = await _watch(v1, "least")
    high = await v1.create_namespaced_pod("default", _sleeper("top", cpu="1", priorityClassName="high"))
    assert high.spec.priority == 100000

    events = await seen
    kind, victim = events[_first_with_target(events)]
    target = _target(victim)
    assert kind == "MODIFIED" and target is not None
    assert (target["status"], target["reason"], target["message"]) == (
        "True",
        "PreemptionByScheduler",
        "default-scheduler: preempting to accommodate a higher priority pod",
    )
    assert any(p["metadata"].get("deletionTimestamp") for _, p in events)
    assert events[-1][0] == "DELETED"
    preempted = [e for e in await _events(v1, "least") if e.reason == "Preempted"]
    assert [e.message for e in preempted] == [f"Preempted by pod {high.metadata.uid} on node {NODE}"]
    assert preempted[0].type == "Normal" and preempted[0].source.component == "default-scheduler"

    top = await wait_phase(v1, "top", ("Running",))
    assert top.spec.node_name == NODE
    failed = [e.message for e in await _events(v1, "top") if e.reason == "FailedScheduling"]
    assert failed[0] == "0/1 nodes are available: 1 Insufficient cpu."
    lower = await v1.read_namespaced_pod("lower", "default")
    assert lower.status.phase == "Running" and not any(
        c.type == "DisruptionTarget" for c in lower.status.conditions
    )


async def test_a_pod_that_does_not_fit_waits_and_is_retried_when_room_frees(
    v1: client.CoreV1Api, cluster: SimCluster
) -> None:
    cluster.set_node_allocatable({"cpu": "2"})
    short = pod_manifest("short", "sleep 1", terminationGracePeriodSeconds=1)
    short["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1500m"}}
    await v1.create_namespaced_pod("default", short)
    await v1.create_namespaced_pod("default", _sleeper("long", cpu="500m"))
    await wait_phase(v1, "long", ("Running",))
    await v1.create_namespaced_pod("default", _sleeper("waiter", cpu="1"))  # same priority: no victims

    def unschedulable(pod: Any) -> bool:
        cond = next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)
        return cond is not None and cond.status == "False"

    pod = await wait_for(lambda: v1.read_namespaced_pod("waiter", "default"), unschedulable)
    cond = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert cond.reason == "Unschedulable"
    assert cond.message == (
        "0/1 nodes are available: 1 Insufficient cpu. "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    )
    assert pod.status.phase == "Pending"
    await wait_phase(v1, "short", ("Succeeded",))  # a finished pod frees its room
    await wait_phase(v1, "waiter", ("Running",))

    await v1.create_namespaced_pod("default", _sleeper("next", cpu="1"))
    await wait_for(lambda: v1.read_namespaced_pod("next", "default"), unschedulable)
    await v1.delete_namespaced_pod("long", "default")  # so does a deleted one
    await wait_phase(v1, "next", ("Running",))


async def test_lost_node_leaves_pods_terminating_until_it_comes_back(
    v1: client.CoreV1Api, cluster: SimCluster
) -> None:
    await v1.create_namespaced_pod("default", _sleeper("n1"))
    forever = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}
    await v1.create_namespaced_pod("default", _sleeper("stays", tolerations=[forever]))
    await wait_phase(v1, "n1", ("Running",))
    await wait_phase(v1, "stays", ("Running",))
    seen = await _watch(v1, "n1", timeout=30)
    async with SimControl(cluster.kubeconfig_path) as ctl:
        assert await ctl.lose_node_of("default", "n1") == NODE

        node = await v1.read_node(NODE)
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert (ready.status, ready.reason) == ("Unknown", "NodeStatusUnknown")
        assert sorted((t.key, t.effect) for t in node.spec.taints) == [
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoSchedule"),
        ]
        pod = await v1.read_namespaced_pod("n1", "default")
        target = next(c for c in pod.status.conditions if c.type == "DisruptionTarget")
        assert (target.status, target.reason, target.message) == (
            "True",
            "DeletionByTaintManager",
            "Taint manager: deleting due to NoExecute taint",
        )
        assert next(c for c in pod.status.conditions if c.type == "Ready").status == "False"
        assert pod.metadata.deletion_timestamp is not None
        reasons = {e.reason: e.message for e in await _events(v1, "n1")}
        assert reasons["TaintManagerEviction"] == "Marking for deletion Pod default/n1"
        assert reasons["NodeNotReady"] == "Node is not ready"
        stays = await v1.read_namespaced_pod("stays", "default")
        assert stays.metadata.deletion_timestamp is None
        assert not any(c.type == "DisruptionTarget" for c in stays.status.conditions)

        # A user's delete does not complete either; a new pod cannot be scheduled.
        await v1.delete_namespaced_pod("stays", "default")
        await v1.create_namespaced_pod("default", _sleeper("newcomer"))
        await asyncio.sleep(1.5)  # longer than the grace period: still there, Terminating
        pod = await v1.read_namespaced_pod("n1", "default")
        assert pod.metadata.deletion_timestamp is not None and pod.status.phase == "Running"
        assert (await v1.read_namespaced_pod("stays", "default")).metadata.deletion_timestamp
        newcomer = await v1.read_namespaced_pod("newcomer", "default")
        cond = next(c for c in newcomer.status.conditions if c.type == "PodScheduled")
        assert cond.message.startswith(
            "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."
        )

        await ctl.restore_node(NODE)
    events = await seen
    assert events[-1][0] == "DELETED"
    await wait_for(
        lambda: v1.list_namespaced_pod("default", field_selector="metadata.name=stays"),
        lambda pods: not pods.items,
        what="the pending delete of stays to complete",
    )
    await wait_phase(v1, "newcomer", ("Running",))
    node = await v1.read_node(NODE)
    assert next(c for c in node.status.conditions if c.type == "Ready").status == "True"
    assert not node.spec.taints


async def test_deleted_node_pod_gc_fails_and_force_deletes_its_pods(
    v1: client.CoreV1Api, cluster: SimCluster
) -> None:
    await v1.create_namespaced_pod("default", _sleeper("g1"))
    await wait_phase(v1, "g1", ("Running",))
    seen = await _watch(v1, "g1")
    async with SimControl(cluster.kubeconfig_path) as ctl:
        assert await ctl.delete_node(NODE) == ["default/g1"]
        events = await seen
        kind, pod = events[_first_with_target(events)]
        assert kind == "MODIFIED" and pod["status"]["phase"] == "Failed"
        target = _target(pod)
        assert target is not None
        assert (target["reason"], target["message"]) == ("DeletionByPodGC", "PodGC: node no longer exists")
        assert events[-1][0] == "DELETED" and events[-1][1]["status"]["phase"] == "Failed"
        assert (await v1.list_node()).items == []

        await v1.create_namespaced_pod("default", _sleeper("orphan"))

        def refused(pod: Any) -> bool:
            cond = next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)
            return cond is not None and cond.message == "no nodes available to schedule pods"

        await wait_for(lambda: v1.read_namespaced_pod("orphan", "default"), refused)
        await ctl.restore_node(NODE)
    assert [n.metadata.name for n in (await v1.list_node()).items] == [NODE]
    await wait_phase(v1, "orphan", ("Running",))


async def test_priority_admission_and_a_pod_that_may_not_preempt(
    v1: client.CoreV1Api, api: client.ApiClient, cluster: SimCluster
) -> None:
    sched = client.SchedulingV1Api(api)
    await sched.create_priority_class({"metadata": {"name": "usual"}, "value": 10, "globalDefault": True})
    await sched.create_priority_class(
        {"metadata": {"name": "polite"}, "value": 500, "preemptionPolicy": "Never"}
    )
    plain = await v1.create_namespaced_pod("default", _sleeper("plain", cpu="1"))
    assert (plain.spec.priority_class_name, plain.spec.priority) == ("usual", 10)
    with pytest.raises(ApiException) as info:
        await v1.create_namespaced_pod("default", _sleeper("forced", priority=7))
    assert json.loads(info.value.body)["message"] == (
        'pods "forced" is forbidden: the integer value of priority (7) must not be provided in pod spec; '
        "priority admission controller computed 10 from the given PriorityClass name"
    )
    with pytest.raises(ApiException) as info:
        await v1.create_namespaced_pod(
            "default", _sleeper("pushy", priorityClassName="polite", preemptionPolicy="PreemptLowerPriority")
        )
    assert json.loads(info.value.body)["message"] == (
        'pods "pushy" is forbidden: the string value of PreemptionPolicy (PreemptLowerPriority) must not be '
        "provided in pod spec; priority admission controller computed Never from the given PriorityClass name"
    )

    cluster.set_node_allocatable({"cpu": "1"})
    await wait_phase(v1, "plain", ("Running",))
    polite = await v1.create_namespaced_pod(
        "default", _sleeper("polite", cpu="1", priorityClassName="polite")
    )
    assert polite.spec.preemption_policy == "Never"

    def unschedulable(pod: Any) -> bool:
        cond = next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)
        return cond is not None and cond.status == "False"

    pod = await wait_for(lambda: v1.read_namespaced_pod("polite", "default"), unschedulable)
    assert next(c for c in pod.status.conditions if c.type == "PodScheduled").message == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    )
    assert (await v1.read_namespaced_pod("plain", "default")).metadata.deletion_timestamp is None
