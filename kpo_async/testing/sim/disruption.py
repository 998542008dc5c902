"""The `DisruptionTarget` pod condition, written by whoever takes a pod away, as Kubernetes does.

Reasons and messages (kube-apiserver, kube-scheduler, kube-controller-manager, kubelet v1.36):
the Eviction API, scheduler preemption, the taint manager (a lost node), pod GC (a deleted node);
the kubelet's own eviction is in kubelet.py (`TerminationByKubelet`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kpo_async.testing.sim.store import Obj, Store
from kpo_async.testing.sim.util import fmt_time

if TYPE_CHECKING:
    from kpo_async.testing.sim.kubelet import PodWorker

EVICTION_API = ("EvictionByEvictionAPI", "Eviction API: evicting")
TAINT_MANAGER = ("DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint")
POD_GC = ("DeletionByPodGC", "PodGC: node no longer exists")
PREEMPTION_REASON = "PreemptionByScheduler"


def preemption_message(scheduler_name: str) -> str:
    return f"{scheduler_name}: preempting to accommodate a higher priority pod"


def add_disruption_target(
    store: Store,
    worker: PodWorker | None,
    pod: dict[str, Any],
    reason_message: tuple[str, str],
    failed: bool = False,
) -> Obj:
    """Write `DisruptionTarget=True` (and `phase: Failed` if asked) on the stored pod at once.

    The controller writes the status itself (the kubelet may be unreachable); the pod's worker
    learns it too, so its later status writes keep the condition.
    """
    reason, message = reason_message
    status = pod.setdefault("status", {})
    conditions = status.get("conditions") or []
    old = next((c for c in conditions if c.get("type") == "DisruptionTarget"), None)
    since = old["lastTransitionTime"] if old and old.get("status") == "True" else fmt_time()
    condition = {
        "type": "DisruptionTarget",
        "status": "True",
        "lastProbeTime": None,
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
    }
    status["conditions"] = [condition, *(c for c in conditions if c.get("type") != "DisruptionTarget")]
    if failed:
        status["phase"] = "Failed"
    if worker is not None:
        worker.set_condition("DisruptionTarget", True, reason, message)
        if failed:
            worker.forced_phase = "Failed"
    return store.update("pods", pod)
