"""The cluster takes the task's pod away, for real (issue 22; docs/reliability.md section 8).

The disruptions come from Kubernetes itself: the Eviction API (what `kubectl drain` calls), kube-scheduler
preempting a low-priority pod for a high-priority one, and the pod garbage collector of
kube-controller-manager removing the pods of a deleted node; a ResourceQuota that kube-controller-manager
keeps the usage of refuses the pod until the test frees it. The test does the cluster's part with the
admin client; the operator runs with the least-privilege ServiceAccount (tools/rbac.yaml), deferring
for real: each trigger is re-created from its serialized kwargs and run to its event in a fresh event
loop, and the task resumes on the "worker" until it ends (`finish`).

Each scenario checks the task's outcome, its XCom, the task log lines, the pods' names, and that no pod
of the task is left. They run on kwok (`make e2e`: a pod that has not started is held in
ContainerCreating by the `kwok.kpo-async.io/pending` annotation, scripts are emulated by podfiles) and
on the real node (`make e2e-node`: an init container that sleeps), unless marked for one of them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import models as k8s
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from kpo_async.airflow_compat import TaskDeferred
from kpo_async.errors import PodFailedError
from kpo_async.testing import harness
from kpo_async.testing.logcapture import capture_logs, pod_lines
from tests.e2e.conftest import ANN, NAMESPACE, ON_REAL_NODE, Cluster, live_pods, wait_for_namespace_setup
from tests.e2e.test_operator_e2e import FakeTI, assert_no_pod_left, make_operator, submit

pytestmark = pytest.mark.e2e

#: The task's pods' terminationGracePeriodSeconds: a real node kills an evicted pod's shell (as PID 1
#: it ignores TERM) after this, not after the default 30 s.
GRACE = 2
#: How long a pod that "has not started" stays so: kwok's `pending` delay, the real node's init container.
NOT_STARTED_SECONDS = 8
#: The work every pod of these tasks does; the first replacement (`-r1`) skips the long part.
WORK = (
    'echo "pod $POD_NAME at work"; '
    'if [ "${POD_NAME%-r1}" = "$POD_NAME" ]; then sleep $FIRST_POD_SECONDS; fi; '
    "echo work done; echo '{\"rows\": 7}' > /airflow/xcom/return.json"
)


# ---------------------------------------------------------------------------------------------------
# The task: what it runs, and Airflow's part (trigger, then resume, until the task ends)


def task_operator(
    cluster: Cluster, name: str, *, not_started: bool = False, first_pod_seconds: int = 0, **kwargs: Any
) -> Any:
    """A task whose pods run `WORK` (XCom ``{"rows": 7}``); with `not_started`, each pod stays
    before its base container for NOT_STARTED_SECONDS; the first pod works `first_pod_seconds`
    longer than its replacements."""
    env = [
        k8s.V1EnvVar(
            name="POD_NAME",
            value_from=k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.name")),
        ),
        k8s.V1EnvVar(name="FIRST_POD_SECONDS", value=str(first_pod_seconds)),
    ]
    if not_started and ON_REAL_NODE:
        kwargs["init_containers"] = [
            k8s.V1Container(
                name="prepare", image="alpine:3.20", command=["sh", "-c", f"sleep {NOT_STARTED_SECONDS}"]
            )
        ]
    elif not_started:
        kwargs["annotations"] = {**kwargs.get("annotations", {}), ANN + "pending": f"{NOT_STARTED_SECONDS}s"}
    return make_operator(
        cluster.operator_kubeconfig,
        name=name,
        cmds=["sh", "-c"],
        arguments=[WORK],
        env_vars=env,
        do_xcom_push=True,
        termination_grace_period=GRACE,
        **kwargs,
    )


def finish(
    op: Any, ti: FakeTI, deferred: TaskDeferred, timeout: float = 150
) -> tuple[Any, list[TaskDeferred]]:
    """Run trigger and resume until the task ends: what it returned, and every re-deferral."""
    redeferred: list[TaskDeferred] = []
    while True:
        event = harness.run_deferred(deferred, timeout)
        try:
            return getattr(op, deferred.method_name)(harness.context_for(ti), event), redeferred
        except TaskDeferred as again:
            redeferred.append(again)
            deferred = again


def said(logs: list[dict[str, Any]]) -> list[str]:
    return [str(entry.get("event")) for entry in logs]


def line_starting(logs: list[dict[str, Any]], prefix: str) -> str:
    found = [line for line in said(logs) if line.startswith(prefix)]
    assert len(found) == 1, (prefix, said(logs))
    return found[0]


# ---------------------------------------------------------------------------------------------------
# The cluster's part, in the background (its own thread and event loop, the admin client)


def on_cluster(cluster: Cluster, act: Callable[[client.CoreV1Api], Awaitable[Any]]) -> Any:
    """``act(admin CoreV1Api)``, run to its end here."""

    async def main() -> Any:
        api = await cluster.api_client()
        try:
            return await act(client.CoreV1Api(api))
        finally:
            await api.close()

    return asyncio.run(main())


@contextmanager
def in_background(cluster: Cluster, act: Callable[[client.CoreV1Api], Awaitable[Any]]) -> Iterator[list[Any]]:
    """Run ``act(admin CoreV1Api)`` in a thread while the block runs; yields a list that holds its
    result once it returned. Its failure fails the test when the block ends."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(on_cluster(cluster, act))
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        thread.join(timeout=120)
    assert not thread.is_alive(), "the cluster's part did not end"
    if errors:
        raise errors[0]


async def wait_for(
    v1: client.CoreV1Api, name: str, check: Callable[[client.V1Pod], bool], what: str, timeout: float = 90
) -> client.V1Pod:
    """Poll pod `name` of the e2e namespace until ``check(pod)`` holds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await v1.read_namespaced_pod(name, NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
        else:
            if check(last):
                return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"pod {name}: no {what} within {timeout} s; last: {last.status if last else None}")


def _state(pod: client.V1Pod, container: str) -> Any:
    statuses = [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
    found = next((s for s in statuses if s.name == container), None)
    return found.state if found is not None else None


def has_not_started(pod: client.V1Pod) -> bool:
    """Scheduled, and held before its base container (kwok: `pending`; real node: init container)."""
    if ON_REAL_NODE:
        state = _state(pod, "prepare")
        return state is not None and state.running is not None
    return bool(pod.spec.node_name) and pod.status.phase == "Pending"


def base_runs(pod: client.V1Pod) -> bool:
    state = _state(pod, "base")
    return state is not None and state.running is not None


def condition(pod: client.V1Pod, kind: str) -> client.V1PodCondition | None:
    return next((c for c in pod.status.conditions or [] if c.type == kind), None)


async def evict(v1: client.CoreV1Api, name: str) -> None:
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": NAMESPACE},
    }
    await v1.create_namespaced_pod_eviction(name, NAMESPACE, eviction)


def evict_when(
    name: str, check: Callable[[client.V1Pod], bool], what: str, settle: float = 0
) -> Callable[..., Awaitable[str]]:
    """Evict pod `name` `settle` seconds after ``check(pod)`` first holds."""

    async def act(v1: client.CoreV1Api) -> str:
        await wait_for(v1, name, check, what)
        await asyncio.sleep(settle)
        await evict(v1, name)
        return name

    return act


async def delete_now(v1: client.CoreV1Api, name: str, namespace: str = NAMESPACE) -> None:
    try:
        await v1.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status != 404:
            raise


# ---------------------------------------------------------------------------------------------------
# 1-2. The Eviction API (a drain)


def test_a_pod_evicted_before_it_started_is_relaunched_and_the_task_succeeds(cluster: Cluster) -> None:
    op = task_operator(cluster, "evict-early", not_started=True)
    ti = FakeTI(op.task_id)
    deferred = submit(op, ti)
    first = deferred.trigger.pod_name
    ns = NAMESPACE
    with (
        capture_logs() as logs,
        in_background(cluster, evict_when(first, has_not_started, "start")) as evicted,
    ):
        result, redeferred = finish(op, ti, deferred)
    assert evicted == [first]
    assert result == {"rows": 7}
    assert [again.trigger.pod_name for again in redeferred] == [f"{first}-r1"]
    second = f"{first}-r1"
    lines = said(logs)
    assert f"pod {ns}/{first} is being taken away by the cluster: Eviction API: evicting" in lines
    assert (
        f"pod {ns}/{first} was evicted by the Eviction API (DisruptionTarget: EvictionByEvictionAPI); "
        f"relaunch 1 of 2 as pod {ns}/{second}"
    ) in lines
    assert pod_lines(logs) == [f"pod {second} at work", "work done"]  # the first never ran its script
    timeline = line_starting(logs, f"pod {ns}/{second} timeline: ")
    assert timeline.endswith(", relaunches 1") and "running " in timeline, timeline
    assert ti.xcoms["pod_name"] == second
    assert f"pod {ns}/{second} succeeded" in lines
    assert_no_pod_left(cluster, ti)


@pytest.mark.parametrize("relaunch_started_pods", [False, True])
def test_a_started_pod_evicted_fails_the_try_unless_relaunch_started_pods(
    cluster: Cluster, relaunch_started_pods: bool
) -> None:
    op = task_operator(
        cluster,
        "evict-late",
        first_pod_seconds=600,
        relaunch_started_pods=relaunch_started_pods,
        retries=2,
    )
    ti = FakeTI(op.task_id)
    deferred = submit(op, ti)
    first = deferred.trigger.pod_name
    ns = NAMESPACE
    started = time.monotonic()
    with (
        capture_logs() as logs,
        # 2 s into its work: the trigger has read its first line before the pod goes.
        in_background(cluster, evict_when(first, base_runs, "running base", settle=2)),
    ):
        if not relaunch_started_pods:
            with pytest.raises(PodFailedError) as failed:
                finish(op, ti, deferred)
        else:
            result, redeferred = finish(op, ti, deferred)
    assert time.monotonic() - started < 90, "the first pod's 600 s of work were not cut short"
    evicted = f"pod {ns}/{first} was evicted by the Eviction API (DisruptionTarget: EvictionByEvictionAPI)"
    assert pod_lines(logs)[0] == f"pod {first} at work"
    if not relaunch_started_pods:
        message = str(failed.value)
        assert message.startswith(evicted), message
        assert "not relaunched: its base container had started (relaunch_started_pods=True" in message
        assert not any("relaunch 1 of" in line for line in said(logs))
        assert "return_value" not in ti.xcoms
    else:
        second = f"{first}-r1"
        assert result == {"rows": 7}
        assert [again.trigger.pod_name for again in redeferred] == [second]
        assert f"{evicted}; relaunch 1 of 2 as pod {ns}/{second}" in said(logs)
        assert pod_lines(logs) == [f"pod {first} at work", f"pod {second} at work", "work done"]
        assert "relaunches 1" in line_starting(logs, f"pod {ns}/{second} timeline: ")
        assert ti.xcoms["pod_name"] == second
    assert_no_pod_left(cluster, ti)


# ---------------------------------------------------------------------------------------------------
# 3. Scheduler preemption (PriorityClasses)

#: The node the tasks' pods land on (`tools/node.sh target real` taints the kwok node NoSchedule).
NODE = "kpo-real-node" if ON_REAL_NODE else "kwok-node-0"


def millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


async def free_cpu(v1: client.CoreV1Api) -> int:
    """NODE's allocatable CPU less what the pods bound to it request (millicores)."""
    node = await v1.read_node(NODE)
    free = millicores(node.status.allocatable["cpu"])
    pods = await v1.list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={NODE},status.phase!=Succeeded,status.phase!=Failed"
    )
    for pod in pods.items:
        for container in pod.spec.containers:
            requests = (container.resources.requests if container.resources else None) or {}
            free -= millicores(requests.get("cpu", "0"))
    return free


def long_running_pod(name: str, cpu: str, **spec: Any) -> dict[str, Any]:
    """A pod that runs for an hour (kwok: `duration`; real node: `sleep`) and asks for `cpu`."""
    return {
        "metadata": {
            "name": name,
            "labels": {"app": "kpo-async-e2e"},
            "annotations": {ANN + "duration": "1h"},
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "base",
                    "image": "busybox:1.36",
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": cpu}},
                }
            ],
            **spec,
        },
    }


@contextmanager
def priority_classes(cluster: Cluster) -> Iterator[tuple[str, str]]:
    """Two new PriorityClasses, (low, high), deleted afterwards."""
    suffix = uuid.uuid4().hex[:8]
    low, high = f"kpo-e2e-low-{suffix}", f"kpo-e2e-high-{suffix}"

    async def create(v1: client.CoreV1Api) -> None:
        scheduling = client.SchedulingV1Api(v1.api_client)
        for name, value in ((low, 1000), (high, 1000000)):
            await scheduling.create_priority_class({"metadata": {"name": name}, "value": value})

    async def delete(v1: client.CoreV1Api) -> None:
        scheduling = client.SchedulingV1Api(v1.api_client)
        for name in (low, high):
            try:
                await scheduling.delete_priority_class(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    try:
        on_cluster(cluster, create)
        yield low, high
    finally:
        on_cluster(cluster, delete)


def test_a_pod_preempted_by_a_higher_priority_pod_is_relaunched_once_there_is_room(cluster: Cluster) -> None:
    """The task's low-priority pod asks for 3/4 of its node's free CPU; a high-priority pod asking as
    much preempts it. The replacement waits (Insufficient cpu) until the high-priority pod is gone."""
    ask = on_cluster(cluster, free_cpu) * 3 // 4
    high_pod = f"preemptor-{uuid.uuid4().hex[:8]}"
    with priority_classes(cluster) as (low, high):
        op = task_operator(
            cluster,
            "preempted",
            not_started=True,
            priority_class_name=low,
            container_resources=k8s.V1ResourceRequirements(requests={"cpu": f"{ask}m"}),
        )
        ti = FakeTI(op.task_id)
        deferred = submit(op, ti)
        first, second = deferred.trigger.pod_name, f"{deferred.trigger.pod_name}-r1"

        async def preempt(v1: client.CoreV1Api) -> str:
            await wait_for(v1, first, has_not_started, "start")
            await v1.create_namespaced_pod(
                NAMESPACE, long_running_pod(high_pod, f"{ask}m", priorityClassName=high)
            )
            await wait_for(v1, high_pod, lambda p: p.spec.node_name == NODE, f"binding to {NODE}")
            waiting = await wait_for(
                v1,
                second,
                lambda p: (c := condition(p, "PodScheduled")) is not None and c.status == "False",
                "FailedScheduling",
            )
            await asyncio.sleep(2)  # the replacement waits for room, not for us
            await delete_now(v1, high_pod)
            return str(condition(waiting, "PodScheduled").message)

        try:
            with capture_logs() as logs, in_background(cluster, preempt) as unschedulable:
                result, redeferred = finish(op, ti, deferred)
        finally:
            on_cluster(cluster, lambda v1: delete_now(v1, high_pod))
    assert result == {"rows": 7}
    assert [again.trigger.pod_name for again in redeferred] == [second]
    assert "Insufficient cpu" in unschedulable[0], unschedulable
    ns = NAMESPACE
    assert (
        f"pod {ns}/{first} was preempted by the scheduler for a higher-priority pod "
        f"(DisruptionTarget: PreemptionByScheduler); relaunch 1 of 2 as pod {ns}/{second}"
    ) in said(logs)
    timeline = line_starting(logs, f"pod {ns}/{second} timeline: ")
    scheduling = int(timeline.split("scheduling ", 1)[1].split("s", 1)[0])
    assert scheduling >= 2 and timeline.endswith("relaunches 1"), timeline
    assert pod_lines(logs) == [f"pod {second} at work", "work done"]
    assert ti.xcoms["pod_name"] == second
    assert_no_pod_left(cluster, ti)


# ---------------------------------------------------------------------------------------------------
# 4. A full ResourceQuota, freed later


@contextmanager
def operator_namespace(cluster: Cluster) -> Iterator[str]:
    """A new namespace where the operator's ServiceAccount has its Role of tools/rbac.yaml (copied
    from kpo-async-e2e) and nothing else runs; deleted afterwards with what is left in it."""
    ns = f"kpo-e2e-{uuid.uuid4().hex[:8]}"

    async def create(v1: client.CoreV1Api) -> None:
        rbac = client.RbacAuthorizationV1Api(v1.api_client)
        await v1.create_namespace({"metadata": {"name": ns, "labels": {"app": "kpo-async-e2e"}}})
        role = await rbac.read_namespaced_role("kpo-async", NAMESPACE)
        await rbac.create_namespaced_role(ns, {"metadata": {"name": "kpo-async"}, "rules": role.rules})
        await rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": "kpo-async"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kpo-async"},
                "subjects": [{"kind": "ServiceAccount", "name": "kpo-async", "namespace": NAMESPACE}],
            },
        )
        await wait_for_namespace_setup(v1.api_client, ns)

    async def delete(v1: client.CoreV1Api) -> None:
        try:
            await v1.delete_namespace(ns)
        except ApiException as exc:
            if exc.status != 404:
                raise

    try:
        on_cluster(cluster, create)
        yield ns
    finally:
        on_cluster(cluster, delete)


def test_a_full_quota_is_waited_for_and_the_pod_created_once_it_is_freed(cluster: Cluster) -> None:
    """In a namespace of its own, so that the quota's usage is this test's alone (pods of earlier
    tests still terminating in kpo-async-e2e count too), with the operator's least-privilege Role
    copied there: the `get resourcequotas` rule users need is part of what this proves. The blocker
    is a pod no node can take (quota counts it all the same)."""
    suffix = uuid.uuid4().hex[:8]
    quota, blocker = f"kpo-e2e-quota-{suffix}", f"quota-blocker-{suffix}"

    with operator_namespace(cluster) as ns:

        async def fill(v1: client.CoreV1Api) -> None:
            await v1.create_namespaced_resource_quota(
                ns, {"metadata": {"name": quota}, "spec": {"hard": {"requests.cpu": "1"}}}
            )
            deadline = time.monotonic() + 30
            while not (await v1.read_namespaced_resource_quota(quota, ns)).status:  # kept by the controller
                assert time.monotonic() < deadline, f"quota {quota} got no status"
                await asyncio.sleep(0.1)
            await v1.create_namespaced_pod(
                ns, long_running_pod(blocker, "800m", nodeSelector={"kpo-async.io/no-such-node": "true"})
            )

        on_cluster(cluster, fill)
        op = task_operator(
            cluster,
            "quota-wait",
            namespace=ns,
            container_resources=k8s.V1ResourceRequirements(requests={"cpu": "500m"}),
        )
        ti = FakeTI(op.task_id)

        async def free_later(v1: client.CoreV1Api) -> list[str]:
            await asyncio.sleep(5)
            pods = await v1.list_namespaced_pod(ns, label_selector=f"run_id={ti.run_id}")
            await delete_now(v1, blocker, ns)
            return [pod.metadata.name for pod in pods.items]

        with capture_logs() as logs:
            deferred = submit(op, ti)
            assert deferred.method_name == "execute_after_quota", deferred
            with in_background(cluster, free_later) as pods_while_waiting:
                result, redeferred = finish(op, ti, deferred)
        assert live_pods(cluster, f"run_id={ti.run_id}", namespace=ns) == [], "the task left a pod behind"
    assert pods_while_waiting == [[]], "a pod was created while the quota was full"
    assert result == {"rows": 7}
    (followed,) = redeferred
    name = followed.trigger.pod_name
    assert name.startswith("quota-wait-") and "-r" not in name
    lines = said(logs)
    refused = [line for line in lines if line.startswith("the namespace's quota has no room for the pod yet")]
    assert len(refused) == 1 and f"exceeded quota: {quota}" in refused[0], refused
    assert refused[0].endswith("; waiting up to 60 s"), refused
    waiting = [line for line in lines if line.startswith(f"namespace quota {ns}/{quota}: ")]
    # The trigger polled the full quota 3 or more times (after 0, 1, 3 s) but said it once.
    assert waiting == [f"namespace quota {ns}/{quota}: requests.cpu used 800m/1, this pod asks 501m; waiting"]
    timeline = line_starting(logs, f"pod {ns}/{name} timeline: ")
    assert timeline.startswith(f"pod {ns}/{name} timeline: quota wait "), timeline
    assert int(timeline.split("quota wait ", 1)[1].split("s", 1)[0]) >= 5, timeline
    assert pod_lines(logs) == [f"pod {name} at work", "work done"]
    assert ti.xcoms["pod_name"] == name


# ---------------------------------------------------------------------------------------------------
# 5. The pod's node is deleted: the pod garbage collector removes the pod


@pytest.mark.kwok_only
def test_a_running_pod_whose_node_is_deleted_is_relaunched_after_pod_gc(cluster: Cluster) -> None:
    """kwok only: a second kwok-managed Node is created for the task's pod and deleted under it; the
    real node cannot be deleted and brought back within a test. kube-controller-manager's pod GC
    fails and removes the pod 40-60 s later (`DeletionByPodGC`); the pod had started, so
    `relaunch_started_pods=True`; the replacement lands on kwok-node-0, labelled meanwhile."""
    suffix = uuid.uuid4().hex[:8]
    node, label = f"kpo-e2e-doomed-{suffix}", "kpo-async.io/e2e-node"

    async def create_node(v1: client.CoreV1Api) -> None:
        await v1.create_node(
            {
                "metadata": {
                    "name": node,
                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {"kubernetes.io/hostname": node, "type": "kwok", label: suffix},
                }
            }
        )
        deadline = time.monotonic() + 60
        while True:  # Ready (kwok), and the not-ready taint lifted (the node lifecycle controller)
            got = await v1.read_node(node)
            ready = any(c.type == "Ready" and c.status == "True" for c in got.status.conditions or [])
            if ready and not got.spec.taints:
                return
            assert time.monotonic() < deadline, (
                f"node {node} not ready: {got.status.conditions} {got.spec.taints}"
            )
            await asyncio.sleep(0.2)

    async def restore(v1: client.CoreV1Api) -> None:
        await v1.patch_node("kwok-node-0", {"metadata": {"labels": {label: None}}})
        try:
            await v1.delete_node(node)
        except ApiException as exc:
            if exc.status != 404:
                raise

    try:
        on_cluster(cluster, create_node)
        op = task_operator(
            cluster,
            "node-gone",
            first_pod_seconds=600,
            relaunch_started_pods=True,
            node_selector={label: suffix},
        )
        ti = FakeTI(op.task_id)
        deferred = submit(op, ti)
        first, second = deferred.trigger.pod_name, f"{deferred.trigger.pod_name}-r1"

        async def delete_node(v1: client.CoreV1Api) -> float:
            await wait_for(
                v1, first, lambda p: base_runs(p) and p.spec.node_name == node, f"running on {node}"
            )
            await asyncio.sleep(2)  # the trigger reads its first line: a deleted node serves no log
            await v1.delete_node(node)
            await v1.patch_node("kwok-node-0", {"metadata": {"labels": {label: suffix}}})
            return time.monotonic()

        with capture_logs() as logs, in_background(cluster, delete_node) as deleted:
            result, redeferred = finish(op, ti, deferred)
            relaunched = time.monotonic()
    finally:
        on_cluster(cluster, restore)
    assert result == {"rows": 7}
    assert [again.trigger.pod_name for again in redeferred] == [second]
    assert relaunched - deleted[0] > 30, "pod GC quarantines a lost node's pods for 40 s"
    ns = NAMESPACE
    assert (
        f"pod {ns}/{first} was garbage-collected (its node no longer exists) "
        f"(DisruptionTarget: DeletionByPodGC); relaunch 1 of 2 as pod {ns}/{second}"
    ) in said(logs)
    assert f"pod {ns}/{first} is being taken away by the cluster: PodGC: node no longer exists" in said(logs)
    assert pod_lines(logs) == [f"pod {first} at work", f"pod {second} at work", "work done"]
    assert ti.xcoms["pod_name"] == second
    assert_no_pod_left(cluster, ti)


# ---------------------------------------------------------------------------------------------------
# 6. The pod's node is lost (stops heartbeating): the taint manager deletes the pod


def kwok_pid(cluster: Cluster) -> int:
    """kwok's process (tools/cluster.sh's pid file: ``PID kwok``), checked by its name."""
    pid = int((cluster.dir / "pids" / "kwok.pid").read_text().split()[0])
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "kwok", f"pid {pid} is not kwok"
    return pid


@contextmanager
def witness_node(cluster: Cluster) -> Iterator[str]:
    """A second Node, kept Ready by heartbeats from this test and tainted so that no pod lands there:
    with every node unready, the node lifecycle controller evicts nothing ("master disruption mode")."""
    name = f"kpo-e2e-witness-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    async def beat(v1: client.CoreV1Api) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "e2e heartbeat"}
        ready |= {"lastHeartbeatTime": now, "lastTransitionTime": since}
        await v1.patch_node_status(name, {"status": {"conditions": [ready]}})

    async def keep_ready(v1: client.CoreV1Api) -> None:
        while not stop.is_set():
            await beat(v1)
            await asyncio.sleep(5)

    async def create(v1: client.CoreV1Api) -> None:
        taint = {"key": "kpo-async.io/e2e-witness", "value": "true", "effect": "NoSchedule"}
        await v1.create_node({"metadata": {"name": name}, "spec": {"taints": [taint]}})
        await beat(v1)

    async def delete(v1: client.CoreV1Api) -> None:
        try:
            await v1.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    try:
        on_cluster(cluster, create)
        with in_background(cluster, keep_ready):
            try:
                yield name
            finally:
                stop.set()
    finally:
        on_cluster(cluster, delete)


async def node_healthy(v1: client.CoreV1Api, node: str) -> None:
    """Wait until `node` is Ready again without the node lifecycle controller's taints."""
    deadline = time.monotonic() + 90
    while True:
        got = await v1.read_node(node)
        ready = any(c.type == "Ready" and c.status == "True" for c in got.status.conditions or [])
        keys = {t.key for t in got.spec.taints or []}
        if ready and not keys & {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}:
            return
        assert time.monotonic() < deadline, f"node {node} did not recover: {got.spec.taints}"
        await asyncio.sleep(0.5)


@pytest.mark.kwok_only
def test_a_running_pod_on_a_lost_node_is_relaunched_once_the_taint_manager_deleted_it(
    cluster: Cluster,
) -> None:
    """kwok only: kwok is frozen (SIGSTOP) so that kwok-node-0 stops heartbeating, and thawed (SIGCONT)
    once the taint manager has marked the pod; the real node cannot be made to vanish and come back
    within a test. After 40 s without a heartbeat the node is `unreachable:NoExecute`; the pod
    tolerates that for 5 s, then gets `DisruptionTarget: DeletionByTaintManager` and a
    deletionTimestamp. The task waits until the pod is gone (the thawed kwok removes it), never
    running two at once, and relaunches it (`relaunch_started_pods=True`: it had started)."""
    unreachable = [
        k8s.V1Toleration(
            key=f"node.kubernetes.io/{key}", operator="Exists", effect="NoExecute", toleration_seconds=5
        )
        for key in ("unreachable", "not-ready")
    ]
    pid = kwok_pid(cluster)
    with witness_node(cluster):
        op = task_operator(
            cluster, "node-lost", first_pod_seconds=600, relaunch_started_pods=True, tolerations=unreachable
        )
        ti = FakeTI(op.task_id)
        deferred = submit(op, ti)
        first, second = deferred.trigger.pod_name, f"{deferred.trigger.pod_name}-r1"

        async def lose_the_node(v1: client.CoreV1Api) -> dict[str, Any]:
            await wait_for(v1, first, base_runs, "running base")
            await asyncio.sleep(2)  # the trigger reads its first line before its node stops answering
            os.kill(pid, signal.SIGSTOP)
            try:
                marked = await wait_for(
                    v1, first, lambda p: p.metadata.deletion_timestamp is not None, "deletion", timeout=120
                )
                await asyncio.sleep(3)  # the marked pod is still there (its node does not answer) ...
                replacement = await v1.list_namespaced_pod(
                    NAMESPACE, field_selector=f"metadata.name={second}"
                )
            finally:
                os.kill(pid, signal.SIGCONT)
            target = condition(marked, "DisruptionTarget")
            return {"target": target and (target.reason, target.message), "replaced": len(replacement.items)}

        try:
            with capture_logs() as logs, in_background(cluster, lose_the_node) as lost:
                result, redeferred = finish(op, ti, deferred)
        finally:
            os.kill(pid, signal.SIGCONT)
            on_cluster(cluster, lambda v1: node_healthy(v1, NODE))
    # ... and no replacement was made while it was.
    assert lost == [
        {
            "target": ("DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint"),
            "replaced": 0,
        }
    ]
    assert result == {"rows": 7}
    assert [again.trigger.pod_name for again in redeferred] == [second]
    ns = NAMESPACE
    assert (
        f"pod {ns}/{first} was deleted by the taint manager (its node was lost or tainted NoExecute) "
        f"(DisruptionTarget: DeletionByTaintManager); relaunch 1 of 2 as pod {ns}/{second}"
    ) in said(logs)
    taken = (
        f"pod {ns}/{first} is being taken away by the cluster: Taint manager: deleting due to NoExecute taint"
    )
    assert taken in said(logs)
    assert pod_lines(logs) == [f"pod {first} at work", f"pod {second} at work", "work done"]
    assert ti.xcoms["pod_name"] == second
    assert_no_pod_left(cluster, ti)
