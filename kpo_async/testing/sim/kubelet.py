"""The simulated scheduler + kubelet: moves pods through their lifecycle and reports real statuses.

One `PodWorker` coroutine per pod, sleeping on asyncio timers (the loop's heap) between steps; an
idle pod costs a suspended coroutine, not a polling loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from kpo_async.testing.sim.behavior import Behavior, parse_behavior
from kpo_async.testing.sim.config import SimConfig
from kpo_async.testing.sim.containers import (
    BASE_ENV,
    FAILING_REGISTRY,
    ContainerState,
    container_argv,
    expand_k8s_vars,
    image_id,
    image_reference_problem,
    normalize_image,
    registry_host,
)
from kpo_async.testing.sim.errors import ApiError, bad_request
from kpo_async.testing.sim.events import EventRecorder
from kpo_async.testing.sim.fs import PodFS
from kpo_async.testing.sim.logs import ContainerLog
from kpo_async.testing.sim.preemption import placement, priority
from kpo_async.testing.sim.refs import env_from_refs, env_value_ref, missing_claim, volume_files
from kpo_async.testing.sim.runtime import ContainerRuntime
from kpo_async.testing.sim.scheduler import Resources, pod_requests
from kpo_async.testing.sim.store import Store
from kpo_async.testing.sim.util import fmt_time, parse_quantity, rand_hex
from kpo_async.testing.sim.validation import BEHAVIOR_ANNOTATION


class _Condition:
    __slots__ = ("message", "reason", "since", "status")

    def __init__(self) -> None:
        self.status = ""
        self.reason: str | None = None
        self.message: str | None = None
        self.since = 0.0


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        self.k = kubelet
        self.pod = pod
        meta, spec = pod["metadata"], pod["spec"]
        self.ns: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.policy: str = spec.get("restartPolicy", "Always")
        inits = spec.get("initContainers") or []
        self.init_cs = [ContainerState(c, True, "PodInitializing") for c in inits]
        self.cs = [
            ContainerState(c, False, "PodInitializing" if inits else "ContainerCreating")
            for c in spec["containers"]
        ]
        for c in self.init_cs:
            c.reason = "ContainerCreating" if c is self.init_cs[0] else "PodInitializing"
        raw = (meta.get("annotations") or {}).get(BEHAVIOR_ANNOTATION)
        self.behavior: Behavior | None = parse_behavior(raw) if raw else None
        self.conditions: dict[str, _Condition] = {}
        self.admitted = False
        self.sandbox_ready = False
        self.start_time: float | None = None
        self.pod_ip: str | None = None
        self.fs: PodFS | None = None
        self.requests: Resources | None = None
        self.terminating = False
        self.forced_phase: str | None = None
        self.status_reason: str | None = None
        self.status_message: str | None = None
        self.removed = False
        #: set by the scheduler's preemption; cleared once bound
        self.nominated_node: str | None = None
        self.victims: list[PodWorker] = []
        self.deleting = False
        self._parked: set[asyncio.Future[None]] = set()
        self._flush_pending = False
        self._kill_timer: asyncio.TimerHandle | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self.task = asyncio.ensure_future(self._run())

    # --- status ---
    def set_condition(
        self, type_: str, status: bool, reason: str | None = None, message: str | None = None
    ) -> None:
        cond = self.conditions.get(type_)
        value = "True" if status else "False"
        if cond is None:
            cond = self.conditions[type_] = _Condition()
        if cond.status != value:
            cond.since = time.time()
        cond.status, cond.reason, cond.message = value, reason, message

    def phase(self) -> str:
        if self.forced_phase:
            return self.forced_phase
        if not self.admitted:
            return "Pending"
        for c in self.init_cs:
            if c.state == "terminated" and c.exit_code != 0 and self.policy == "Never":
                return "Failed"
            if not (c.state == "terminated" and c.exit_code == 0):
                return "Pending"
        waiting = running = stopped = succeeded = 0
        for c in self.cs:
            if c.state == "running":
                running += 1
            elif c.state == "terminated":
                stopped += 1
                succeeded += c.exit_code == 0
            elif c.last_state:
                stopped += 1
            else:
                waiting += 1
        if waiting:
            return "Pending"
        if running:
            return "Running"
        if stopped:
            if self.policy == "Always":
                return "Running"
            if stopped == succeeded:
                return "Succeeded"
            if self.policy == "Never":
                return "Failed"
            return "Running"
        return "Pending"

    def _update_conditions(self, phase: str) -> None:
        if not self.admitted:
            return
        self.set_condition(
            "PodReadyToStartContainers", self.sandbox_ready and phase not in ("Succeeded", "Failed")
        )
        incomplete = [c.name for c in self.init_cs if not (c.state == "terminated" and c.exit_code == 0)]
        if incomplete:
            self.set_condition(
                "Initialized",
                False,
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(incomplete)}]",
            )
        else:
            self.set_condition("Initialized", True)
        unready = [c.name for c in self.cs if not c.ready]
        if not unready:
            self.set_condition("ContainersReady", True)
            self.set_condition("Ready", True)
        elif phase in ("Succeeded", "Failed"):
            reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
            self.set_condition("ContainersReady", False, reason)
            self.set_condition("Ready", False, reason)
        else:
            msg = f"containers with unready status: [{' '.join(unready)}]"
            self.set_condition("ContainersReady", False, "ContainersNotReady", msg)
            self.set_condition("Ready", False, "ContainersNotReady", msg)

    def render_status(self) -> dict[str, Any]:
        phase = self.phase()
        self._update_conditions(phase)
        status: dict[str, Any] = {"phase": phase}
        order = [
            "DisruptionTarget",
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ]
        conds = []
        for type_ in order:
            c = self.conditions.get(type_)
            if c is None:
                continue
            d: dict[str, Any] = {
                "type": type_,
                "status": c.status,
                "lastProbeTime": None,
                "lastTransitionTime": fmt_time(c.since),
            }
            if c.reason:
                d["reason"] = c.reason
            if c.message:
                d["message"] = c.message
            conds.append(d)
        if conds:
            status["conditions"] = conds
        if self.status_message:
            status["message"] = self.status_message
        if self.status_reason:
            status["reason"] = self.status_reason
        if self.nominated_node:
            status["nominatedNodeName"] = self.nominated_node
        if self.admitted:
            status["hostIP"] = "127.0.0.1"
            status["hostIPs"] = [{"ip": "127.0.0.1"}]
            if self.pod_ip:
                status["podIP"] = self.pod_ip
                status["podIPs"] = [{"ip": self.pod_ip}]
            status["startTime"] = fmt_time(self.start_time)
            if self.init_cs:
                status["initContainerStatuses"] = [c.render() for c in self.init_cs]
            # the kubelet sorts container statuses by name (init containers stay in spec order)
            status["containerStatuses"] = [c.render() for c in sorted(self.cs, key=lambda c: c.name)]
        status["qosClass"] = self.pod.get("status", {}).get("qosClass", "BestEffort")
        return status

    def mark(self) -> None:
        """Schedule one status write for everything changed in this loop iteration."""
        if self._flush_pending or self.removed:
            return
        self._flush_pending = True
        loop = asyncio.get_running_loop()
        if self.k.config.status_batch > 0:
            loop.call_later(self.k.config.status_batch, self._flush)
        else:
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self.removed or (self.k.node_state != "Ready" and self.pod["spec"].get("nodeName")):
            return  # a lost node's kubelet reports nothing; NodeLifecycle.restore flushes again
        obj = self.k.store.get("pods", self.ns, self.name)
        if obj is None or obj.body is not self.pod:
            return
        status = self.render_status()
        if status == self.pod.get("status"):
            return
        self.pod["status"] = status
        self.k.store.update("pods", self.pod)

    def event(
        self,
        reason: str,
        message: str,
        type_: str = "Normal",
        container: ContainerState | None = None,
        component: str = "kubelet",
    ) -> None:
        fp = None
        if container is not None:
            group = "initContainers" if container.init else "containers"
            fp = f"spec.{group}{{{container.name}}}"
        self.k.events.record(self.pod, reason, message, type_, fp, component)

    # --- waiting ---
    async def wait(self, seconds: float | None) -> bool:
        """Sleep (forever if None) unless the pod is being terminated; False if it is (or becomes)
        so. A plain future + loop timer: no task, no Event per waiting pod."""
        if self.terminating:
            return False
        if seconds is not None and seconds <= 0:
            await asyncio.sleep(0)
            return not self.terminating
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._parked.add(fut)
        timer = loop.call_later(seconds, _resolve, fut) if seconds is not None else None
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            self._parked.discard(fut)
        return not self.terminating

    def _wake(self) -> None:
        for fut in list(self._parked):
            _resolve(fut)

    def _scaled(self, seconds: float) -> float:
        return self.k.config.scaled(seconds)

    # --- lifecycle ---
    async def _run(self) -> None:
        try:
            if not await self._schedule():
                return
            await self._admit()
            if not self.terminating and await self._run_inits():
                await self._run_mains()
        except Exception:  # pragma: no cover - a bug must not kill the loop silently
            import logging

            logging.getLogger(__name__).exception("pod worker %s/%s crashed", self.ns, self.name)
        finally:
            self.mark()
            if self.phase() in ("Succeeded", "Failed"):
                self.k.release(self)

    async def _schedule(self) -> bool:
        spec = self.pod["spec"]
        node = self.k.config.node_name
        if spec.get("nodeName"):
            if spec["nodeName"] != node:
                await self.wait(None)
                return False
            self.requests = pod_requests(spec)
            self.k.reserve(self.requests)
            return True
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            await self.wait(None)
            return False
        if not await self.wait(self._scaled(self.k.config.schedule_delay)):
            return False
        backoff = self.k.config.backoff_initial
        while True:
            epoch = self.k.room_epoch
            claim_msg = missing_claim(self.k.store, self.ns, spec)
            msg = claim_msg or placement(self.k, self)
            if msg is None:
                break
            if msg:  # "" while its victims are going away: nothing new to say
                self.set_condition("PodScheduled", False, "Unschedulable", msg)
                self.event("FailedScheduling", msg, "Warning", component="default-scheduler")
                self.mark()
            if "affinity/selector" in msg:
                await self.wait(None)
                return False
            if claim_msg:  # retried with backoff, as the scheduler does until the claim appears
                if not await self.wait(self._scaled(backoff)):
                    return False
                backoff = min(backoff * 2, self.k.config.backoff_max)
                continue
            if epoch != self.k.room_epoch:  # room freed meanwhile (a victim deleted at once)
                continue
            self.k.unschedulable.add(self)
            try:
                if not await self.wait(None):
                    return False
            finally:
                self.k.unschedulable.discard(self)
        self.k.nominated.pop(self, None)
        self.nominated_node = None
        self.requests = pod_requests(spec)
        self.k.reserve(self.requests)
        spec["nodeName"] = node
        self.set_condition("PodScheduled", True)
        self.event(
            "Scheduled",
            f"Successfully assigned {self.ns}/{self.name} to {node}",
            component="default-scheduler",
        )
        self.mark()
        return True

    async def _admit(self) -> None:
        self.admitted = True
        self.start_time = time.time()
        self.fs = PodFS([v["name"] for v in self.pod["spec"].get("volumes") or []])
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        if deadline:
            self._deadline_timer = asyncio.get_running_loop().call_later(
                float(deadline), self._deadline_exceeded
            )
        self.mark()
        if not await self._mount_volumes():
            return
        lo, hi = self.k.config.sandbox_delay
        if not await self.wait(self._scaled(self.k.rng.uniform(lo, hi))):
            return
        self.sandbox_ready = True
        self.pod_ip = self.k.allocate_ip()
        self.mark()

    async def _mount_volumes(self) -> bool:
        """Fill Secret/ConfigMap volumes; while one cannot be mounted, FailedMount and retry."""
        assert self.fs is not None
        backoff = self.k.config.backoff_initial
        while True:
            failed = None
            for vol in self.pod["spec"].get("volumes") or []:
                files = volume_files(self.k.store, self.ns, vol)
                if isinstance(files, str):
                    failed = files
                    break
                target = self.fs.volumes[vol["name"]]
                for path, data in files.items():
                    parts = path.split("/")
                    for k in range(1, len(parts)):
                        target.dirs.add("/".join(parts[:k]))
                    target.files[path] = bytearray(data)
            if failed is None:
                return True
            self.event("FailedMount", failed, "Warning")
            self.mark()
            if not await self.wait(self._scaled(backoff)):
                return False
            backoff = min(backoff * 2, self.k.config.backoff_max)

    async def _run_inits(self) -> bool:
        for cs in self.init_cs:
            code = await self._container(cs)
            if code is None or code != 0 or self.terminating:
                return False
        for cs in self.cs:
            cs.waiting("ContainerCreating")
        self.mark()
        return True

    async def _run_mains(self) -> None:
        tasks = []
        for cs in self.cs:
            tasks.append(asyncio.ensure_future(self._container(cs)))
            await asyncio.wait([cs.first_attempt, tasks[-1]], return_when=asyncio.FIRST_COMPLETED)
            if self.terminating:
                break
        await asyncio.gather(*tasks)

    async def _pull(self, cs: ContainerState) -> bool:
        image = cs.spec["image"]
        policy = cs.spec.get("imagePullPolicy", "IfNotPresent")
        backoff = self.k.config.backoff_initial
        if (problem := image_reference_problem(image)) is not None:  # no pull can fix it
            cs.waiting("InvalidImageName", problem)
            self.event("InspectFailed", problem, "Warning", cs)
            self.event("Failed", "Error: InvalidImageName", "Warning", cs)
            self.mark()
            await self.wait(None)
            return False
        while True:
            if policy != "Always" and image in self.k.images:
                self.event("Pulled", f'Container image "{image}" already present on machine', container=cs)
                return True
            if policy == "Never":
                msg = f'Container image "{image}" is not present with pull policy of Never'
                cs.waiting("ErrImageNeverPull", msg)
                self.event("Failed", msg, "Warning", cs)
                self.event("Failed", "Error: ErrImageNeverPull", "Warning", cs)
                cs.attempted()
                self.mark()
                await self.wait(None)
                return False
            self.event("Pulling", f'Pulling image "{image}"', container=cs)
            t0 = time.monotonic()
            if not await self.wait(self._scaled(self.k.config.pull_delay)):
                return False
            if registry_host(image) == FAILING_REGISTRY:
                full = normalize_image(image)
                path = full.split("/", 1)[1].rsplit(":", 1)
                detail = (
                    f'rpc error: code = Unknown desc = failed to pull and unpack image "{full}": '
                    f'failed to resolve reference "{full}": '
                    f'failed to do request: Head "https://{FAILING_REGISTRY}/v2/{path[0]}/manifests/'
                    f'{path[1] if len(path) > 1 else "latest"}": '
                    f"dial tcp: lookup {FAILING_REGISTRY}: no such host"
                )
                cs.waiting("ErrImagePull", detail)
                self.event("Failed", f'Failed to pull image "{image}": {detail}', "Warning", cs)
                self.event("Failed", "Error: ErrImagePull", "Warning", cs)
                cs.attempted()
                self.mark()
                if not await self.wait(self._scaled(min(backoff, 1.0) / 2)):
                    return False
                cs.waiting("ImagePullBackOff", f'Back-off pulling image "{image}"')
                self.event("BackOff", f'Back-off pulling image "{image}"', container=cs)
                self.event("Failed", "Error: ImagePullBackOff", "Warning", cs)
                self.mark()
                if not await self.wait(self._scaled(backoff)):
                    return False
                backoff = min(backoff * 2, self.k.config.backoff_max)
                continue
            took = time.monotonic() - t0
            self.k.images.add(image)
            ms = f"{took * 1000:.0f}ms"
            size = int(hashlib.sha256(image.encode()).hexdigest()[:6], 16) + 3_000_000
            self.event(
                "Pulled",
                f'Successfully pulled image "{image}" in {ms} ({ms} including waiting). '
                f"Image size: {size} bytes.",
                container=cs,
            )
            cs.image_id = image_id(image)
            return True

    def _env(self, cs: ContainerState) -> dict[str, str] | str:
        """The container's environment, or the CreateContainerConfigError message."""
        env = dict(BASE_ENV)
        env["HOSTNAME"] = self.name
        meta, spec = self.pod["metadata"], self.pod["spec"]
        from_refs = env_from_refs(self.k.store, self.ns, cs.spec)
        if isinstance(from_refs, str):
            return from_refs
        env.update(from_refs)
        for item in cs.spec.get("env") or []:
            name = item["name"]
            if "valueFrom" in item:
                vf = item["valueFrom"]
                if "fieldRef" in vf:
                    env[name] = self._field_ref(vf["fieldRef"].get("fieldPath", ""))
                elif "resourceFieldRef" in vf:
                    env[name] = self._resource_ref(cs, vf["resourceFieldRef"])
                elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
                    value = env_value_ref(self.k.store, self.ns, vf)
                    if isinstance(value, Exception):
                        return str(value)
                    if value is not None:
                        env[name] = value
            else:
                env[name] = expand_k8s_vars(str(item.get("value", "")), env)
        del meta, spec
        return env

    def _field_ref(self, path: str) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        simple = {
            "metadata.name": self.name,
            "metadata.namespace": self.ns,
            "metadata.uid": self.uid,
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.podIP": self.pod_ip or "",
            "status.podIPs": self.pod_ip or "",
            "status.hostIP": "127.0.0.1",
            "status.hostIPs": "127.0.0.1",
        }
        if path in simple:
            return simple[path]
        m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        return ""

    def _resource_ref(self, cs: ContainerState, ref: dict[str, Any]) -> str:
        res = ref.get("resource", "")
        kind, _, name = res.partition(".")
        value = ((cs.spec.get("resources") or {}).get(kind) or {}).get(name)
        q = (
            parse_quantity(value)
            if value is not None
            else Fraction(self.k.allocatable.get(name, Fraction(0)))
        )
        divisor = parse_quantity(ref.get("divisor", "1"))
        return str(-(-q // divisor))

    async def _container(self, cs: ContainerState) -> int | None:
        """Pull, create, start, wait, restart per policy. Returns the final exit code."""
        backoff = self.k.config.backoff_initial
        while True:
            if cs.restart_count == 0 or not cs.image_id:
                if not await self._pull(cs):
                    cs.attempted()
                    return None
            env = self._env(cs)
            if isinstance(env, str):
                cs.waiting("CreateContainerConfigError", env)
                self.event("Failed", f"Error: {env}", "Warning", cs)
                cs.attempted()
                self.mark()
                if not await self.wait(self._scaled(backoff)):
                    return None
                backoff = min(backoff * 2, self.k.config.backoff_max)
                continue
            cs.container_id = "containerd://" + rand_hex(64)
            cs.image_id = cs.image_id or image_id(cs.spec["image"])
            self.event("Created", f"Created container: {cs.name}", container=cs)
            if not await self.wait(self._scaled(self.k.config.start_delay)):
                cs.attempted()
                return None
            argv = container_argv(cs.spec, env)
            behavior = self.behavior if cs is self.cs[0] else None
            assert self.fs is not None
            fs = self.fs.container_fs(cs.spec.get("volumeMounts") or [], self.name)
            rt = ContainerRuntime(
                self.name,
                fs,
                env,
                argv,
                behavior,
                self._scaled(self.k.config.noop_container_seconds),
                self.k.config.max_log_bytes,
            )
            security = {
                **(self.pod["spec"].get("securityContext") or {}),
                **(cs.spec.get("securityContext") or {}),
            }
            rt.uid = int(security.get("runAsUser") or 0)
            cs.runtime = rt
            cs.state, cs.reason, cs.message = "running", None, None
            cs.started_at = time.time()
            cs.exit_code = cs.term_reason = cs.term_message = None
            cs.signal = None
            rt.start()
            self.event("Started", f"Started container {cs.name}", container=cs)
            cs.attempted()
            self.mark()
            code = await rt.done
            rt.log.close()
            cs.finished_at = time.time()
            cs.exit_code = code
            if rt.reason:
                cs.term_reason = rt.reason
            else:
                cs.term_reason = "Completed" if code == 0 else "Error"
            cs.term_message = rt.termination_message(
                cs.spec.get("terminationMessagePolicy", "File"),
                cs.spec.get("terminationMessagePath", "/dev/termination-log"),
                code,
            )
            cs.state = "terminated"
            self.mark()
            if self.terminating or self.forced_phase:
                return code
            if cs.init:
                restart = code != 0 and self.policy != "Never"
            else:
                restart = self.policy == "Always" or (self.policy == "OnFailure" and code != 0)
            if not restart:
                if not cs.init:
                    self._maybe_finished()
                return code
            # CrashLoopBackOff, then a new container instance
            cs.last_state = {"terminated": cs.terminated_dict()}
            cs.prev_log = rt.log
            cs.restart_count += 1
            cs.runtime = None
            delay = backoff
            backoff = min(backoff * 2, self.k.config.backoff_max)
            cs.waiting(
                "CrashLoopBackOff",
                f"back-off {delay:g}s restarting failed container={cs.name} "
                f"pod={self.name}_{self.ns}({self.uid})",
            )
            self.event(
                "BackOff",
                f"Back-off restarting failed container {cs.name} in pod {self.name}_{self.ns}({self.uid})",
                "Warning",
                cs,
            )
            self.mark()
            if not await self.wait(self._scaled(delay)):
                return code

    def _maybe_finished(self) -> None:
        if self.phase() in ("Succeeded", "Failed"):
            self.k.release(self)

    # --- termination ---
    def running_containers(self) -> list[ContainerState]:
        return [c for c in self.init_cs + self.cs if c.runtime is not None and c.state == "running"]

    def terminate(self, grace: float) -> None:
        """Send TERM to every container, KILL after `grace` seconds."""
        first = not self.terminating
        self.terminating = True
        self._wake()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        if first:
            for c in self.running_containers():
                self.event("Killing", f"Stopping container {c.name}", container=c)
                assert c.runtime is not None
                c.runtime.signal(15 if grace > 0 else 9)
        if grace <= 0:
            self._kill_all()
        else:
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            self._kill_timer = asyncio.get_running_loop().call_later(grace, self._kill_all)
        self.mark()

    def _kill_all(self) -> None:
        for c in self.running_containers():
            assert c.runtime is not None
            c.runtime.force_kill()

    def _deadline_exceeded(self) -> None:
        if self.phase() in ("Succeeded", "Failed"):
            return
        msg = "Pod was active on the node longer than the specified deadline"
        self.forced_phase = "Failed"
        self.status_reason = "DeadlineExceeded"
        self.status_message = msg
        self.k.events.record(self.pod, "DeadlineExceeded", msg, "Normal", None, "kubelet")
        self.terminate(float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))

    def evict(self, message: str) -> None:
        self.forced_phase = "Failed"
        self.status_reason = "Evicted"
        self.status_message = message
        self.set_condition("DisruptionTarget", True, "TerminationByKubelet", message)
        self.k.events.record(self.pod, "Evicted", message, "Warning", None, "kubelet")
        self.terminate(0)

    async def stopped(self) -> None:
        """Wait until every container has stopped (the lifecycle coroutine returned)."""
        await asyncio.shield(self.task)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Kubelet:
    def __init__(self, config: SimConfig, store: Store, events: EventRecorder) -> None:
        self.config = config
        self.store = store
        self.events = events
        self.rng = random.Random(config.seed)
        self.workers: dict[tuple[str, str], PodWorker] = {}
        self.images: set[str] = set()
        self.allocatable: Resources = {k: parse_quantity(v) for k, v in config.node_allocatable.items()}
        self.used: Resources = {}
        #: pods waiting for room (FailedScheduling), woken highest priority first when it frees
        self.unschedulable: set[PodWorker] = set()
        #: preemptors waiting for their victims to go, and the room they hold meanwhile
        self.nominated: dict[PodWorker, Resources] = {}
        #: "Ready", "Lost" (no status reports, deletions wait) or "Deleted" (nodes.py)
        self.node_state = "Ready"
        #: the API server's graceful delete (api.py), used by preemption
        self.delete_pod: Callable[[str, str, dict[str, Any]], Any] | None = None
        self.bg: set[asyncio.Task[Any]] = set()
        self.room_epoch = 0
        self._ip = 1

    # --- resources ---
    def reserve(self, req: Resources) -> None:
        for k, v in req.items():
            self.used[k] = self.used.get(k, Fraction(0)) + v

    def release(self, worker: PodWorker) -> None:
        if worker.requests is None:
            return
        for k, v in worker.requests.items():
            self.used[k] = self.used.get(k, Fraction(0)) - v
        worker.requests = None
        self.wake_unschedulable()

    def wake_unschedulable(self) -> None:
        """Room freed: the waiting pods retry, the highest priority first (the scheduling queue)."""
        self.room_epoch += 1
        for waiting in sorted(self.unschedulable, key=lambda w: -priority(w.pod)):
            waiting._wake()

    def set_allocatable(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self.allocatable[key] = parse_quantity(value)
            self.config.node_allocatable[key] = str(value)
        self.wake_unschedulable()

    def allocate_ip(self) -> str:
        while True:
            self._ip += 1
            a, b = (self._ip >> 8) & 0xFF, self._ip & 0xFF
            if b not in (0, 255) and (a, b) != (0, 1):
                return f"127.0.{a}.{b}"

    # --- pods ---
    def admit(self, pod: dict[str, Any]) -> PodWorker:
        worker = PodWorker(self, pod)
        self.workers[(worker.ns, worker.name)] = worker
        return worker

    def worker(self, ns: str, name: str) -> PodWorker | None:
        return self.workers.get((ns, name))

    def forget(self, ns: str, name: str) -> None:
        worker = self.workers.pop((ns, name), None)
        if worker is not None:
            worker.removed = True
            self.nominated.pop(worker, None)
            worker.terminate(0)
            self.release(worker)

    def start_delete(self, worker: PodWorker, grace: float) -> None:
        worker.deleting = True
        task = asyncio.ensure_future(self.graceful_delete(worker, grace))
        self.bg.add(task)
        task.add_done_callback(self.bg.discard)

    async def graceful_delete(self, worker: PodWorker, grace: float) -> None:
        """TERM the containers, wait until they stopped (KILL after grace), then remove the pod."""
        worker.terminate(grace)
        try:
            await worker.stopped()
        except Exception:  # pragma: no cover
            pass
        worker._flush()  # final status before the DELETED event
        await asyncio.sleep(self.config.scaled(self.config.delete_delay))
        while self.node_state == "Lost":  # noqa: ASYNC110 - the node comes back when a test says so
            await asyncio.sleep(0.05)
        obj, pod = self.store.get("pods", worker.ns, worker.name), worker.pod
        if obj is not None and obj.body is pod and pod["metadata"].get("finalizers"):
            # The object waits for its finalizers (api.py removes it once they are gone): a kubelet
            # reports the deleted pod terminal, and its final delete sets the grace period to 0.
            if worker.phase() not in ("Succeeded", "Failed"):
                worker.forced_phase = "Failed"
            pod["metadata"].update(deletionTimestamp=fmt_time(), deletionGracePeriodSeconds=0)
            pod["status"] = worker.render_status()
            self.store.update("pods", pod)
            self.release(worker)
            return
        if self.workers.get((worker.ns, worker.name)) is worker:
            del self.workers[(worker.ns, worker.name)]
        worker.removed = True
        self.nominated.pop(worker, None)
        self.release(worker)
        obj = self.store.get("pods", worker.ns, worker.name)
        if obj is not None and obj.body is worker.pod:
            self.store.delete("pods", worker.ns, worker.name, worker.pod)

    def evict(self, ns: str, name: str, message: str) -> None:
        worker = self.workers.get((ns, name))
        if worker is None:
            raise bad_request(f"pod {name} is not running on the node")
        worker.evict(message)

    # --- logs / exec ---
    def container_for_log(self, ns: str, name: str, container: str, previous: bool) -> ContainerLog | None:
        """The log to serve, None for an unscheduled pod (empty log), or a 400 ApiError."""
        worker = self.workers.get((ns, name))
        if worker is None or not worker.admitted:
            return None
        cs = next((c for c in worker.init_cs + worker.cs if c.name == container), None)
        if cs is None:
            raise bad_request(f"container {container} is not valid for pod {name}")
        if previous:
            if cs.prev_log is None:
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            return cs.prev_log
        if cs.runtime is not None and cs.state in ("running", "terminated"):
            return cs.runtime.log
        if cs.state == "waiting" and cs.prev_log is not None:
            return cs.prev_log
        reason = cs.reason or "ContainerCreating"
        # (sic: the kubelet maps them this way round)
        if reason == "ErrImagePull":
            detail = "image can't be pulled"
        elif reason == "ImagePullBackOff":
            detail = "trying and failing to pull image"
        else:
            detail = reason
        raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {detail}')

    def runtime_for_exec(self, ns: str, name: str, container: str) -> ContainerRuntime | dict[str, Any]:
        """The running container, or the node's refusal as the Status the apiserver sends on the
        error channel after the upgrade (it upgrades first and then dials the kubelet, which finds
        only running containers: "container not found")."""
        worker = self.workers.get((ns, name))
        if worker is None:
            raise ApiError(404, f'pods "{name}" not found', "NotFound", {"name": name, "kind": "pods"})
        cs = next((c for c in worker.init_cs + worker.cs if c.name == container), None)
        if cs is None:
            raise bad_request(f"container {container} is not valid for pod {name}")
        if cs.runtime is None or cs.state != "running":
            cause = f'unable to upgrade connection: container not found ("{container}")'
            return {
                "metadata": {},
                "status": "Failure",
                "message": f"Internal error occurred: {cause}",
                "reason": "InternalError",
                "details": {"causes": [{"message": cause}]},
                "code": 500,
            }
        return cs.runtime
