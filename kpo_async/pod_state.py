"""A slim, immutable view of a pod's status, parsed from API JSON.

The shared watch keeps one of these per pod instead of a full model object: parsing a watch event
into generated model classes costs far more CPU and memory than the few fields we decide on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
#: Which of a container status's ``state`` keys is set ("unknown": none yet).
ContainerStateKind = Literal["waiting", "running", "terminated", "unknown"]
#: Waiting reasons that mean the pod will not start without someone fixing something.
FATAL_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
#: How the cluster takes a pod away: the `DisruptionTarget` condition's reasons, and the kubelet's
#: `Evicted` (a pod status reason, set also by kubelets older than the condition), in words.
DISRUPTIONS = {
    "EvictionByEvictionAPI": "evicted by the Eviction API",
    "PreemptionByScheduler": "preempted by the scheduler for a higher-priority pod",
    "DeletionByTaintManager": "deleted by the taint manager (its node was lost or tainted NoExecute)",
    "TerminationByKubelet": "terminated by its node's kubelet",
    "DeletionByPodGC": "garbage-collected (its node no longer exists)",
    "Evicted": "evicted by the kubelet",
}


def epoch(stamp: str | None) -> float | None:
    """An API timestamp (RFC 3339, ``Z``) as epoch seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


@dataclass(frozen=True)
class ContainerState:
    name: str
    state: ContainerStateKind
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    #: When the container started running and when it ended (epoch seconds), if it did.
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def terminated(self) -> bool:
        return self.state == "terminated"

    @property
    def running_or_done(self) -> bool:
        return self.state in ("running", "terminated")

    @classmethod
    def from_api(cls, status: Mapping[str, Any]) -> ContainerState:
        state = status.get("state") or {}
        kinds: tuple[ContainerStateKind, ...] = ("terminated", "running", "waiting")
        kind: ContainerStateKind = next((kind for kind in kinds if state.get(kind) is not None), "unknown")
        detail = state.get(kind) or {}
        return cls(
            name=status.get("name", ""),
            state=kind,
            reason=detail.get("reason"),
            message=detail.get("message"),
            exit_code=detail.get("exitCode"),
            started_at=epoch(detail.get("startedAt")),
            finished_at=epoch(detail.get("finishedAt")),
        )


@dataclass(frozen=True)
class PodState:
    name: str
    namespace: str
    uid: str
    phase: Phase
    reason: str | None
    message: str | None
    #: When the pod's deletion grace period ends (epoch seconds), once it is being deleted.
    deletion_at: float | None
    containers: tuple[ContainerState, ...]
    init_containers: tuple[ContainerState, ...]
    unschedulable_message: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    #: When the pod was created, scheduled and initialized (epoch seconds; from its conditions).
    scheduled_at: float | None = None
    created_at: float | None = None
    initialized_at: float | None = None
    #: How the cluster took the pod away (a `DISRUPTIONS` key), if it did, and its message.
    disruption: tuple[str, str] | None = None

    @classmethod
    def from_api(cls, pod: Mapping[str, Any]) -> PodState:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        conditions = {(c.get("type"), c.get("status")): c for c in status.get("conditions") or []}
        since = {kind: c.get("lastTransitionTime") for (kind, met), c in conditions.items() if met == "True"}
        target = conditions.get(("DisruptionTarget", "True")) or {}
        if target.get("reason") not in DISRUPTIONS:  # the kubelet's Evicted: a reason and message too
            target = status if status.get("reason") == "Evicted" else {}
        disruption = (target["reason"], target.get("message") or "") if target else None
        return cls(
            name=meta.get("name", ""),
            namespace=meta.get("namespace", ""),
            uid=meta.get("uid", ""),
            phase=status.get("phase") or "Pending",
            reason=status.get("reason"),
            message=status.get("message"),
            deletion_at=epoch(meta.get("deletionTimestamp")),
            containers=tuple(map(ContainerState.from_api, status.get("containerStatuses") or [])),
            init_containers=tuple(map(ContainerState.from_api, status.get("initContainerStatuses") or [])),
            unschedulable_message=(conditions.get(("PodScheduled", "False")) or {}).get("message"),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            scheduled_at=epoch(since.get("PodScheduled")),
            created_at=epoch(meta.get("creationTimestamp")),
            initialized_at=epoch(since.get("Initialized")),
            disruption=disruption,
        )

    def container(self, name: str) -> ContainerState | None:
        """The named container's state, an init container's too (names are unique in a pod)."""
        return next((c for c in (*self.init_containers, *self.containers) if c.name == name), None)

    def ended(self, container: str) -> bool:
        """The pod has finished, or the named container has terminated."""
        found = self.container(container)
        return self.finished or (found is not None and found.terminated)

    @property
    def deleting(self) -> bool:
        return self.deletion_at is not None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def started(self, base_container: str) -> bool:
        """The pod got past startup: its base container ran (or the pod already ended)."""
        base = self.container(base_container)
        return self.finished or (base is not None and base.running_or_done)

    def fatal_waiting(self) -> ContainerState | None:
        """A container (init or regular) stuck for a reason that will not fix itself."""
        waiting = (c for c in (*self.init_containers, *self.containers) if c.state == "waiting")
        return next((c for c in waiting if c.reason in FATAL_WAITING_REASONS), None)

    def failed_init(self) -> ContainerState | None:
        return next((s for s in self.init_containers if s.terminated and s.exit_code not in (0, None)), None)
