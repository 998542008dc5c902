"""kube-scheduler's decision for one pending pod on the single node: the taints of a lost node,
room (requests against allocatable, minus what nominated preemptors hold), and preemption of
lower-priority pods when that would make room."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

from kpo_async.testing.sim.disruption import PREEMPTION_REASON, add_disruption_target, preemption_message
from kpo_async.testing.sim.scheduler import Resources, choose_victims, fit, pod_requests

if TYPE_CHECKING:
    from kpo_async.testing.sim.kubelet import Kubelet, PodWorker

UNREACHABLE = "node.kubernetes.io/unreachable"
NO_NODES = "no nodes available to schedule pods"
UNREACHABLE_MSG = (
    f"0/1 nodes are available: 1 node(s) had untolerated taint {{{UNREACHABLE}: }}. "
    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
)


def priority(pod: dict[str, Any]) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


def tolerates(spec: dict[str, Any], key: str, effect: str) -> bool:
    """Does a toleration of the pod match the taint `key` (empty value) with `effect`?"""
    for t in spec.get("tolerations") or []:
        if t.get("effect") not in (None, "", effect):
            continue
        op = t.get("operator") or "Equal"
        if op == "Exists" and t.get("key") in (None, "", key):
            return True
        if op == "Equal" and t.get("key") == key and not t.get("value"):
            return True
    return False


def _used_for(k: Kubelet, worker: PodWorker) -> Resources:
    """The node's usage as this pod sees it: room held for nominated pods of at least its priority."""
    used = dict(k.used)
    mine = priority(worker.pod)
    for other, requests in k.nominated.items():
        if other is not worker and priority(other.pod) >= mine:
            for key, value in requests.items():
                used[key] = used.get(key, Fraction(0)) + value
    return used


def placement(k: Kubelet, worker: PodWorker) -> str | None:
    """None if the pod can be bound now, else the FailedScheduling message ("" when its
    preemption's victims are still going away). Preempts when that makes room."""
    spec = worker.pod["spec"]
    if k.node_state == "Deleted":
        return NO_NODES
    if k.node_state == "Lost" and not tolerates(spec, UNREACHABLE, "NoSchedule"):
        return UNREACHABLE_MSG
    used = _used_for(k, worker)
    msg = fit(spec, k.config.node_name, k.config.node_labels, k.allocatable, used)
    if msg is None or "affinity/selector" in msg:
        return msg
    reasons = msg.split(" preemption:")[0]
    if any(k.workers.get((v.ns, v.name)) is v for v in worker.victims):
        return ""
    if spec.get("preemptionPolicy") == "Never":
        return f"{reasons} preemption: not eligible due to preemptionPolicy=Never."
    mine = priority(worker.pod)
    candidates = [
        w
        for w in k.workers.values()
        if w.requests is not None
        and w is not worker
        and priority(w.pod) < mine
        and not w.pod["metadata"].get("deletionTimestamp")
    ]
    picks = choose_victims(
        pod_requests(spec),
        k.allocatable,
        used,
        [(priority(w.pod), w.start_time or 0.0, w.requests or {}) for w in candidates],
    )
    if not picks:
        return msg
    worker.victims = [candidates[i] for i in picks]
    k.nominated[worker] = pod_requests(spec)
    worker.nominated_node = k.config.node_name
    for victim in worker.victims:
        _preempt(k, victim, worker)
    return reasons


def _preempt(k: Kubelet, victim: PodWorker, preemptor: PodWorker) -> None:
    scheduler = preemptor.pod["spec"].get("schedulerName") or "default-scheduler"
    add_disruption_target(k.store, victim, victim.pod, (PREEMPTION_REASON, preemption_message(scheduler)))
    k.events.record(
        victim.pod,
        "Preempted",
        f"Preempted by pod {preemptor.uid} on node {k.config.node_name}",
        "Normal",
        None,
        scheduler,
    )
    if k.delete_pod is not None:
        k.delete_pod(victim.ns, victim.name, {})
