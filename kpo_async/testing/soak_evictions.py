"""The soak's evictions (see `kpo_async.testing.soak`): policies, the record of each eviction, the
parent's own watch of the cluster, and what each task must end with.

The watch is the judge of "two pods of one try alive at once": it follows every soak pod through a
cluster-wide watch (`/api/v1/pods`), a path no injected fault matches, so that it misses nothing
the faults would hide from the runtime; it never reads the parent's bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

TERMINAL_PHASES = ("Succeeded", "Failed")
#: What the trigger's event names for each way the soak evicts (the kubelet's may be either).
DISRUPTION_REASONS = {
    "eviction-api": ("EvictionByEvictionAPI",),
    "kubelet": ("TerminationByKubelet", "Evicted"),
}


@dataclass(frozen=True)
class Policy:
    """A task's relaunch arguments (`AsyncKubernetesPodOperator`'s, same names)."""

    name: str
    disruption_relaunches: int
    relaunch_started_pods: bool


POLICIES = (
    Policy("default", 2, False),
    Policy("relaunch started pods", 2, True),
    Policy("relaunch started pods, once", 1, True),
    Policy("no relaunch", 0, False),
)
POLICY_WEIGHTS = (70, 14, 6, 10)


def policy_operator(policy: Policy, task_id: str, do_xcom: bool, kubeconfig: str) -> Any:
    """The operator a task of this policy would run: the soak asks it, not a copy of its rule,
    whether a pod is relaunched (`_why_not_relaunched`), and lets it clean up and create pods."""
    from kpo_async.operator import AsyncKubernetesPodOperator

    return AsyncKubernetesPodOperator(
        task_id=task_id,
        image="alpine:3.20",
        kubernetes_conn_id=None,
        config_file=kubeconfig,
        do_xcom_push=do_xcom,
        disruption_relaunches=policy.disruption_relaunches,
        relaunch_started_pods=policy.relaunch_started_pods,
    )


@dataclass
class Eviction:
    """One pod the soak took away."""

    plan: int
    pod_name: str
    relaunch: int
    kind: str  # "eviction-api" or "kubelet"
    aimed_at: str  # "not started" or "started": what the evictor chose the pod for
    at: float
    triggerer_running: bool
    #: Lines of the base container's log when known: read just before an Eviction API eviction (the
    #: log goes with the pod), or after the trigger's event for a kubelet one (the pod stays).
    lines_printed: int | None = None
    #: Whether the base container had started, as the watch saw the pod (set once it is gone or ended).
    started: bool | None = None


@dataclass
class Expected:
    """What a task must end with: its pods (one per relaunch) and its final result."""

    pods: int
    status: str  # "success" or "failed"
    exit_code: int | None = None
    xcom: Any = None
    disruption_kind: str | None = None
    refusal: str | None = None  # "started" or "used": why the last pod was not replaced


def expected_result(plan: Any, evictions: dict[int, Eviction]) -> Expected:
    """What the policy says for a task whose pods were evicted as `evictions` (by relaunch) records;
    written from the issue's words, independently of the operator's code."""
    policy: Policy = plan.policy
    relaunch = 0
    while (eviction := evictions.get(relaunch)) is not None:
        if eviction.started and not policy.relaunch_started_pods:
            return Expected(relaunch + 1, "failed", disruption_kind=eviction.kind, refusal="started")
        if relaunch >= policy.disruption_relaunches:
            return Expected(relaunch + 1, "failed", disruption_kind=eviction.kind, refusal="used")
        relaunch += 1
    if plan.exit_code == 0:
        return Expected(relaunch + 1, "success", 0, plan.xcom if plan.do_xcom else None)
    return Expected(relaunch + 1, "failed", plan.exit_code)


def wrong_result(expected: Expected, pods: int, result: dict[str, Any] | None) -> str | None:
    """Why the task's final `result` (and its number of pods) is not `expected`, or None."""
    if result is None:
        return "no final result"
    if pods != expected.pods:
        return f"expected {expected.pods} pod(s), the task made {pods}"
    status, message = result.get("status"), result.get("message")
    if expected.status == "success":
        if status != "success":
            return f"expected success, got {status}: {message}"
        if result.get("xcom") != expected.xcom:
            return f"expected XCom {expected.xcom!r}, got {result.get('xcom')!r}"
        return None
    if expected.disruption_kind is None:
        if status != "failed" or result.get("exit_code") != expected.exit_code:
            return f"expected failed with exit code {expected.exit_code}, got {status}: {message}"
        return None
    reasons = DISRUPTION_REASONS[expected.disruption_kind]
    said = {"started": "had started", "used": "relaunches were used"}[expected.refusal or "used"]
    if status == "success" or result.get("disruption") not in reasons or said not in str(message):
        return f"expected failed naming {'/'.join(reasons)} ({said}), got {status}: {message}"
    return None


# ------------------------------------------------------------------------------------------------
# the parent's own watch
# ------------------------------------------------------------------------------------------------


def plan_index(pod: dict[str, Any]) -> int | None:
    """The soak task a pod belongs to (its `task_id` label is `pod-<index>`)."""
    task_id = ((pod.get("metadata") or {}).get("labels") or {}).get("task_id", "")
    head, _, number = task_id.partition("-")
    return int(number) if head == "pod" and number.isdigit() else None


def _container(pod: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get(key) or []
    return next((s for s in statuses if s.get("name") == name), {})


def base_started(pod: dict[str, Any]) -> bool:
    state = _container(pod, "containerStatuses", "base").get("state") or {}
    return "running" in state or bool((state.get("terminated") or {}).get("startedAt"))


def running(pod: dict[str, Any], key: str, name: str) -> bool:
    return "running" in (_container(pod, key, name).get("state") or {})


@dataclass
class PodWatch:
    """Every soak pod as the cluster shows it, and every moment two pods of one task were alive
    (present and not Succeeded/Failed) at once."""

    client: Any
    selector: str
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: When the parent first saw each (pod, container) running: the evictor's clock.
    running_since: dict[tuple[str, str], float] = field(default_factory=dict)
    ever_started: set[str] = field(default_factory=set)
    overlaps: list[dict[str, Any]] = field(default_factory=list)
    relists: int = 0
    _overlap_keys: set[tuple[str, ...]] = field(default_factory=set)
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        resource_version = None
        while True:
            try:
                if resource_version is None:
                    resource_version = await self._list()
                resource_version = await self._watch(resource_version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                gone = "410" in str(exc) or "Expired" in str(exc)
                print(f"  soak watch: {type(exc).__name__}: {exc}"[:300], flush=True)
                resource_version = None if gone else resource_version
                await asyncio.sleep(0.2)

    async def _list(self) -> str:
        response = await self.client.core.list_pod_for_all_namespaces(
            label_selector=self.selector, _preload_content=False
        )
        body = json.loads(await response.read())
        if self.synced.is_set():
            self.relists += 1  # a gap: moments inside it were not seen
        self.pods = {}
        for item in body.get("items") or []:
            self._apply("ADDED", item)
        self.synced.set()
        return str(body["metadata"]["resourceVersion"])

    async def _watch(self, resource_version: str) -> str:
        response = await self.client.core.list_pod_for_all_namespaces(
            label_selector=self.selector,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=300,
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None),
        )
        try:
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                if event.get("type") != "BOOKMARK":
                    self._apply(event["type"], obj)
        finally:
            response.release()
        return resource_version

    def _apply(self, kind: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        now = time.time()
        if kind == "DELETED":
            self.pods.pop(name, None)
            return
        self.pods[name] = pod
        if base_started(pod):
            self.ever_started.add(name)
        for key, container in (("initContainerStatuses", "prepare"), ("containerStatuses", "base")):
            if running(pod, key, container):
                self.running_since.setdefault((name, container), now)
        self._check(plan_index(pod))

    def _check(self, index: int | None) -> None:
        alive = sorted(
            name
            for name, pod in self.pods.items()
            if plan_index(pod) == index and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES
        )
        if len(alive) > 1 and tuple(alive) not in self._overlap_keys:
            self._overlap_keys.add(tuple(alive))
            self.overlaps.append(
                {
                    "plan": index,
                    "pods": {
                        n: {
                            "phase": (self.pods[n].get("status") or {}).get("phase"),
                            "deletionTimestamp": self.pods[n]["metadata"].get("deletionTimestamp"),
                        }
                        for n in alive
                    },
                    "at": time.time(),
                }
            )

    def alive(self, name: str) -> dict[str, Any] | None:
        pod = self.pods.get(name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return None
        return pod if (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES else None


async def count_log_lines(client: Any, name: str, namespace: str) -> int | None:
    """How many lines the pod's base container has written; None if the log cannot be read (the
    injected faults hit this read as any other)."""
    for _ in range(4):
        with contextlib.suppress(Exception):
            response = await client.core.read_namespaced_pod_log(
                name, namespace, container="base", _preload_content=False
            )
            data = await response.read()
            return data.count(b"\n")
        await asyncio.sleep(0.5)
    return None
