"""The node lifecycle and pod GC controllers for the single node, driven by the control API.

What kube-controller-manager does when a node stops reporting (`lose`): the node's conditions turn
Unknown and it gets the `unreachable` taints; its pods are marked not Ready, get
`DisruptionTarget` (taint manager) and a deletionTimestamp that does not complete while the
kubelet is away. `restore` brings the kubelet back (the pending deletions complete); `delete`
removes the Node object, and pod GC fails and force-deletes the pods that were bound to it.
The real delays (node-monitor-grace-period, tolerationSeconds, the GC quarantine) are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kpo_async.testing.sim.disruption import POD_GC, TAINT_MANAGER, add_disruption_target
from kpo_async.testing.sim.errors import ApiError, not_found
from kpo_async.testing.sim.events import EventRecorder
from kpo_async.testing.sim.kubelet import Kubelet, PodWorker
from kpo_async.testing.sim.preemption import UNREACHABLE
from kpo_async.testing.sim.store import Store
from kpo_async.testing.sim.util import fmt_time

UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
DeletePod = Callable[[str, str, dict[str, Any]], Any]


def _tolerates_forever(spec: dict[str, Any]) -> bool:
    """A NoExecute toleration of `unreachable` without tolerationSeconds: the pod stays."""
    for t in spec.get("tolerations") or []:
        if t.get("effect") not in (None, "", "NoExecute") or t.get("tolerationSeconds") is not None:
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", UNREACHABLE):
            return True
        if t.get("key") == UNREACHABLE and not t.get("value"):
            return True
    return False


class NodeLifecycle:
    def __init__(
        self,
        store: Store,
        kubelet: Kubelet,
        events: EventRecorder,
        make_node: Callable[[], dict[str, Any]],
        delete_pod: DeletePod,
    ) -> None:
        self.store = store
        self.kubelet = kubelet
        self.events = events
        self.make_node = make_node
        self.delete_pod = delete_pod

    def _check(self, node: str) -> None:
        if node != self.kubelet.config.node_name:
            raise not_found("nodes", node)

    def _bound(self, node: str) -> list[dict[str, Any]]:
        out = []
        for obj in self.store.list("pods"):
            if obj.body is not None and obj.body["spec"].get("nodeName") == node:
                out.append(obj.body)
        return out

    def _worker(self, pod: dict[str, Any]) -> PodWorker | None:
        return self.kubelet.worker(pod["metadata"]["namespace"], pod["metadata"]["name"])

    def lose(self, node: str) -> list[str]:
        """The node stops reporting; returns "ns/name" of the pods the taint manager marked."""
        self._check(node)
        if self.kubelet.node_state != "Ready":
            raise ApiError(409, f'node "{node}" is not Ready ({self.kubelet.node_state})', "Conflict")
        self.kubelet.node_state = "Lost"
        self._write_node(ready=False)
        marked = []
        for pod in self._bound(node):
            meta = pod["metadata"]
            self._mark_not_ready(pod)
            self.events.record(pod, "NodeNotReady", "Node is not ready", "Warning", None, "node-controller")
            if meta.get("deletionTimestamp") or _tolerates_forever(pod["spec"]):
                continue
            add_disruption_target(self.store, self._worker(pod), pod, TAINT_MANAGER)
            self.events.record(
                pod,
                "TaintManagerEviction",
                f"Marking for deletion Pod {meta['namespace']}/{meta['name']}",
                "Normal",
                None,
                "taint-eviction-controller",
            )
            self.delete_pod(meta["namespace"], meta["name"], {})
            marked.append(f"{meta['namespace']}/{meta['name']}")
        return marked

    def _mark_not_ready(self, pod: dict[str, Any]) -> None:
        """The node lifecycle controller sets Ready=False (reason and message kept)."""
        changed = False
        for cond in pod.get("status", {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") != "False":
                cond["status"], cond["lastTransitionTime"] = "False", fmt_time()
                changed = True
        if changed:
            self.store.update("pods", pod)

    def restore(self, node: str) -> None:
        """The kubelet reports again (or registers again after `delete`)."""
        self._check(node)
        state, self.kubelet.node_state = self.kubelet.node_state, "Ready"
        if state == "Deleted":
            self.store.create("nodes", self.make_node())
        elif state == "Lost":
            self._write_node(ready=True)
            for pod in self._bound(node):
                worker = self._worker(pod)
                if worker is None:
                    continue
                worker.mark()
                if pod["metadata"].get("deletionTimestamp") and not worker.deleting:
                    grace = float(pod["metadata"].get("deletionGracePeriodSeconds", 0))
                    self.kubelet.start_delete(worker, grace)
        self.kubelet.wake_unschedulable()

    def delete(self, node: str) -> list[str]:
        """Delete the Node object; pod GC fails and force-deletes its pods ("ns/name" returned)."""
        self._check(node)
        if self.kubelet.node_state == "Deleted":
            raise not_found("nodes", node)
        self.kubelet.node_state = "Deleted"
        self.store.delete("nodes", "", node)
        collected = []
        for pod in self._bound(node):
            meta = pod["metadata"]
            add_disruption_target(self.store, self._worker(pod), pod, POD_GC, failed=True)
            self.delete_pod(meta["namespace"], meta["name"], {"gracePeriodSeconds": 0})
            collected.append(f"{meta['namespace']}/{meta['name']}")
        return collected

    def set_allocatable(self, node: str, values: dict[str, str]) -> dict[str, str]:
        """Change the node's capacity/allocatable (e.g. {"cpu": "2"}); waiting pods retry."""
        self._check(node)
        self.kubelet.set_allocatable(values)
        obj = self.store.get("nodes", "", node)
        if obj is None or obj.body is None:
            return {}
        status = obj.body["status"]
        for key in ("capacity", "allocatable"):
            status[key] = {**status.get(key, {}), **values}
        self.store.update("nodes", obj.body)
        return dict(status["allocatable"])

    def _write_node(self, ready: bool) -> None:
        obj = self.store.get("nodes", "", self.kubelet.config.node_name)
        if obj is None or obj.body is None:
            return
        body, now = obj.body, fmt_time()
        fresh = self.make_node()["status"]["conditions"]
        if ready:
            body["status"]["conditions"] = fresh
            body["spec"].pop("taints", None)
        else:
            for cond in body["status"]["conditions"]:
                cond.update(
                    status="Unknown",
                    reason="NodeStatusUnknown",
                    message=UNKNOWN_MESSAGE,
                    lastTransitionTime=now,
                )
            body["spec"]["taints"] = [
                {"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": now},
                {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now},
            ]
        self.store.update("nodes", body)
