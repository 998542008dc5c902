"""Follow one pod to its end: a small state machine over the pod's `PodState`.

`PodMonitor.run` is what `triggers.pod.PodTrigger` runs on the triggerer. It learns about the pod
from the shared watch (`kpo_async.watch`), never by polling it, except as a fallback while the
watch is unhealthy. Stages: STARTING (until the base container runs) -> RUNNING (until it has
ended; `PodLogs` tails the log meanwhile) -> finished: the outcome, with the XCom result
collected by `XComCollector` on success. The result is a `PodOutcome`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from kpo_async.callbacks import TriggerCallbacks
from kpo_async.clients import ClusterClient
from kpo_async.errors import ClusterUnreachableError, KpoAsyncError
from kpo_async.identity import RELAUNCH_ANNOTATION
from kpo_async.k8s_objects import to_v1pod
from kpo_async.log_follower import Formatter, PodLogs
from kpo_async.outcome import PodOutcome, Status
from kpo_async.pod_state import DISRUPTIONS, PodState
from kpo_async.pods import pod_events, read_pod, read_pod_json, release_pod
from kpo_async.retry import describe
from kpo_async.timeline import describe_timeline, pod_timeline
from kpo_async.trigger_settings import MonitorSettings
from kpo_async.watch import Subscription, shared_watcher, watch_refused
from kpo_async.xcom import XComCollector

#: How long past its grace period a pod the cluster took away may take to end before the try fails
#: instead of replacing it: a pod on a lost node may still run, and may never end.
_TAKEN_AWAY_MARGIN_SECONDS = 60.0


class PodMonitor:
    def __init__(
        self,
        client: ClusterClient,
        namespace: str,
        pod_name: str,
        settings: MonitorSettings,
        *,
        log_cursor: str | None,
        logger: Any,
        formatter: Formatter | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.pod_name = pod_name
        self._pod_ref = f"{namespace}/{pod_name}"
        self.settings = settings
        self.log = logger
        #: Past STARTING: the base container ran (RUNNING until it ends).
        self.started = False
        state = self._latest_state
        self.logs = PodLogs(
            client, namespace, pod_name, settings, log_cursor, logger=logger, state=state, formatter=formatter
        )
        self.callbacks = TriggerCallbacks(settings.callbacks, logger)  # none: nothing to load or call
        self.logs.line_listener = self.callbacks.line if settings.callbacks else None
        self.xcom = XComCollector(client, namespace, pod_name, self._next_state, logger)
        self._polled: PodState | None = None
        self._seen: set[str] = set()
        self._events_read_at = 0.0
        self._subscription: Subscription | None = None
        #: The last state seen (the timeline's source), and the first that showed a disruption.
        self._last: PodState | None = None
        self._disrupted: PodState | None = None
        self._disrupted_seen = 0.0

    async def run(self) -> PodOutcome:
        self._subscription = shared_watcher(self.client, self.namespace).subscribe(self.pod_name)
        try:
            await self.callbacks.load()
            outcome, state = None, None
            while outcome is None:
                state = await self._next_state(self._deadline(state))
                if (taken_away := self._subscription.watcher.taken_away.get(self.pod_name)) is not None:
                    # deleted (without our finalizer) before this loop saw its last state
                    self._note_disruption(taken_away)
                if state is not None:
                    self._last = state
                    self._note_disruption(state)
                    self._report_progress(state)
                    await self.logs.update(state)
                outcome = await self._step(state)
            await self.logs.finish()  # e.g. a failed init container's last lines
            tail = tuple(self.logs.tail) if outcome.status is not Status.SUCCESS else ()
            timeline: dict[str, int] = {}
            if self._last is not None:  # where the pod's time went
                timeline = pod_timeline(self._last, self.settings.base_container_name, ended_at=time.time())
                self.log.info("pod %s timeline: %s", self._pod_ref, describe_timeline(timeline))
            return replace(outcome, log_tail=tail, log_cursor=self.logs.cursor, timeline=timeline)
        finally:
            await self.logs.stop()
            await self.callbacks.close()
            self._subscription.watcher.unsubscribe(self._subscription)

    def _deadline(self, state: PodState | None) -> float | None:
        if self._disrupted is not None:  # a taken-away pod's grace period, and a margin
            deletion_at = (state or self._disrupted).deletion_at
            return (deletion_at or self._disrupted_seen) + _TAKEN_AWAY_MARGIN_SECONDS
        return self.settings.execution_deadline if self.started else self._start_deadline(state)[0]

    async def _step(self, state: PodState | None) -> PodOutcome | None:
        """Act on the pod's latest state: move to the next stage, or the outcome when it ends."""
        pod, base = self._pod_ref, self.settings.base_container_name
        if self._disrupted is not None:
            return self._disruption_outcome(state)
        if state is None or (state.deleting and not self._succeeded(state)):
            # Deleted from outside (our deletes release our finalizer first): let the object go. Not
            # waiting for the kubelet's TERM, grace period and KILL: "exit code 137" 30 s later.
            if state is not None:
                await release_pod(self.client, self.namespace, self.pod_name)
            started = self.started or (state is not None and state.started(base))
            what = "before its container finished" if started else "or never created before it started"
            return self._outcome(Status.ERROR, state, "PodDeleted", f"pod {pod} was deleted {what}")
        if not self.started:
            if not state.started(base):
                return await self._startup_problem(state)
            self.started = True
            if self.settings.callbacks:
                self.callbacks.client = self.client.core
                raw = await read_pod_json(self.client, self.namespace, self.pod_name)
                self.callbacks.pod = to_v1pod(raw or {})
                await self.callbacks.call("on_pod_starting", context=None, operator=None)
        if state.ended(base):
            await self.logs.finish()
            return await self._complete(state)
        if _passed(self.settings.execution_deadline):
            why = f"pod {pod} was still running when execution_timeout ran out"
            return self._outcome(Status.TIMEOUT, state, "ExecutionTimeout", why)
        return None

    async def _startup_problem(self, state: PodState) -> PodOutcome | None:
        """The outcome of a pod that cannot start, or None while it may still start in time."""
        now = time.monotonic()
        if self.settings.log_events_on_startup and now - self._events_read_at >= 1.0:
            # The events not seen yet; at most one events request per second per starting pod.
            self._events_read_at = now
            for line in await self._event_lines(new_only=True):
                self.log.info("pod %s event: %s", self._pod_ref, line)
        if (init := state.failed_init()) is not None:
            detail = init.message or init.reason
            why = f"init container {init.name} exited with code {init.exit_code}: {detail}"
            reason = init.reason or "InitContainerFailed"
            return self._outcome(Status.FAILED, state, reason, why, init.exit_code)
        # ErrImagePull may be transient.
        if (fatal := state.fatal_waiting()) is not None and fatal.reason != "ErrImagePull":
            why = f"container {fatal.name} cannot start: {fatal.reason}: {fatal.message or ''}".rstrip(": ")
            return self._outcome(Status.FAILED, state, fatal.reason, why)
        deadline, window = self._start_deadline(state)
        if not _passed(deadline):
            return None
        events = "; ".join(await self._event_lines()) or "none"
        detail = state.unschedulable_message or (fatal.message if fatal else None) or state.phase
        what, reason = "did not start", "StartupTimeout"
        if window == "schedule_timeout_seconds":
            what, reason = "was not scheduled", "ScheduleTimeout"
            window = f"{window} (startup_timeout_seconds if unset)"
        why = f"pod {self._pod_ref} {what} before {window} ran out ({detail})."
        return self._outcome(Status.TIMEOUT, state, reason, f"{why} Events: {events}")

    def _start_deadline(self, state: PodState | None) -> tuple[float | None, str]:
        """The deadline that applies while the pod starts, and the argument that set it: the
        scheduling window until the pod is scheduled, then the startup window from its scheduling
        (the pod's own PodScheduled time, so that a restarted trigger keeps the same deadline)."""
        settings = self.settings
        if settings.schedule_deadline is None or settings.startup_timeout_seconds is None:
            return settings.startup_deadline, "startup_timeout_seconds"
        if state is None or state.scheduled_at is None:
            return settings.schedule_deadline, "schedule_timeout_seconds"
        return state.scheduled_at + settings.startup_timeout_seconds, "startup_timeout_seconds"

    async def _complete(self, state: PodState) -> PodOutcome:
        base = state.container(self.settings.base_container_name)
        exit_code = base.exit_code if base is not None else None
        reason = (base.reason if base is not None else None) or state.reason
        if not (exit_code == 0 or (base is None and state.phase == "Succeeded")):
            failed_xcom = await self.xcom.collect_after_failure(state) if self.settings.do_xcom_push else None
            detail = (base.message if base is not None else None) or state.message or ""
            why = (
                f"container {self.settings.base_container_name} of pod {self._pod_ref} exited with code "
                f"{exit_code} ({reason}){': ' + detail if detail else ''}"
            )
            return self._outcome(Status.FAILED, state, reason or "Error", why, exit_code, failed_xcom)
        xcom: Any = None
        if self.settings.do_xcom_push:
            try:
                xcom = await self.xcom.collect(state)
            except KpoAsyncError as exc:
                await self.xcom.stop_sidecar_quietly(state)
                return self._outcome(Status.ERROR, state, "XComError", str(exc), exit_code)
        return self._outcome(Status.SUCCESS, state, reason, "", exit_code, xcom)

    def _note_disruption(self, state: PodState) -> None:
        """Remember the first sign that the cluster is taking the pod away (unless its base
        container had already succeeded: then the pod's work is done)."""
        if self._disrupted is None and state.disruption and not self._succeeded(state):
            self._disrupted, self._disrupted_seen = state, time.time()
            self.log.info("pod %s is being taken away by the cluster: %s", self._pod_ref, state.disruption[1])

    def _succeeded(self, state: PodState) -> bool:
        base = state.container(self.settings.base_container_name)
        return base is not None and base.terminated and base.exit_code == 0

    def _disruption_outcome(self, state: PodState | None) -> PodOutcome | None:
        """Once the taken-away pod is gone or has ended, the outcome naming the disruption (the
        task may relaunch the pod then: never two pods of one try at once); None meanwhile."""
        disrupted = self._disrupted
        assert disrupted is not None and disrupted.disruption is not None
        reason, message = disrupted.disruption
        source = "Evicted" if reason == "Evicted" else f"DisruptionTarget: {reason}"
        why = f"pod {self._pod_ref} was {DISRUPTIONS[reason]} ({source})"
        if reason in ("Evicted", "TerminationByKubelet") and message:  # the kubelet says why
            why += f": {message.rstrip('. ')}"
        if state is not None and not state.finished:
            if not _passed(self._deadline(state)):
                return None
            why += f" and has not ended {_TAKEN_AWAY_MARGIN_SECONDS:g} s after its grace period (its node "
            why += "may be unreachable): not replaced, so that two pods of this try never run at once"
            return self._outcome(Status.ERROR, state, "TakenAwayPodStuck", why)
        base = (state or disrupted).container(self.settings.base_container_name)
        started = self.started or (base is not None and base.started_at is not None)
        relaunch = int(disrupted.annotations.get(RELAUNCH_ANNOTATION, 0))
        outcome = self._outcome(Status.ERROR, disrupted, reason, why)
        return replace(outcome, disruption=reason, started=started, relaunch=relaunch)

    # -- the pod's state -------------------------------------------------------------------------
    async def _next_state(self, deadline: float | None) -> PodState | None:
        """The pod's state after its next change, a deadline or a fallback poll; None once gone.

        The shared watch is the source; the API server is asked directly only when the watch
        says the pod is absent (to rule out a race with its ADDED event), when the watch has
        been silent for `fallback_poll_seconds` and is unhealthy, or at a deadline before the
        pod was ever seen.
        """
        subscription = self._subscription
        assert subscription is not None
        while True:
            # A healthy watch wakes us on every change (and when it turns unhealthy): no timer
            # then but the deadline. An unhealthy one is trusted for fallback_poll_seconds only.
            wait = None if subscription.watcher.healthy else self.settings.fallback_poll_seconds
            if deadline is not None:
                remaining = max(0.0, deadline - time.time())
                wait = remaining if wait is None else min(wait, remaining)
            changed = await subscription.wait(wait)
            if subscription.watcher.refusal is not None:
                raise watch_refused(subscription.watcher.refusal, self.namespace)
            state = subscription.state
            if state is not None and (changed or subscription.watcher.healthy):
                self._polled = None
                return state
            if state is None and not (subscription.known_absent or not changed or _passed(deadline)):
                continue  # the watch has not synced yet
            try:  # ask the API server directly (None: the pod does not exist)
                self._polled = await read_pod(self.client, self.namespace, self.pod_name)
            except ClusterUnreachableError:
                if self._polled is None:
                    raise  # nothing known at all: let the event say the cluster is unreachable
            return self._polled

    def _latest_state(self) -> PodState | None:
        return (self._subscription.state if self._subscription else None) or self._polled

    # -- progress reports -------------------------------------------------------------------------
    def _report_progress(self, state: PodState) -> None:
        if self._first_time(f"phase:{state.phase}"):  # phases only move forward (Unknown aside)
            self.log.info("pod %s is %s", self._pod_ref, state.phase)
        for container in (*state.init_containers, *state.containers):
            key = f"{container.name}:{container.state}:{container.reason}"
            if container.state == "waiting" and container.reason and self._first_time(key):
                detail = f": {container.message}" if container.message else ""
                self.log.info("container %s waiting: %s%s", container.name, container.reason, detail)
        if state.unschedulable_message and self._first_time(f"unsched:{state.unschedulable_message}"):
            self.log.info("pod %s cannot be scheduled yet: %s", self._pod_ref, state.unschedulable_message)

    def _first_time(self, key: str) -> bool:
        """Whether `key` (a waiting reason, an event ...) is new; remember it."""
        new = key not in self._seen
        self._seen.add(key)
        return new

    async def _event_lines(self, *, new_only: bool = False) -> list[str]:
        try:
            items = await pod_events(self.client, self.namespace, self.pod_name)
        except Exception as exc:
            return [f"(events unavailable: {describe(exc)})"]
        lines = []
        for item in items:
            new = self._first_time(f"{(item.get('metadata') or {}).get('uid')}/{item.get('count')}")
            if new or not new_only:
                lines.append(f"{item.get('reason')}: {item.get('message')}")
        return lines[-10:]

    # -- the outcome ------------------------------------------------------------------------------
    def _outcome(
        self,
        status: Status,
        state: PodState | None,
        reason: str | None,
        message: str,
        exit_code: int | None = None,
        xcom: Any = None,
    ) -> PodOutcome:
        uid, phase = (state.uid, state.phase) if state else (None, None)
        return PodOutcome(status, self.namespace, self.pod_name, uid, phase, exit_code, reason, message, xcom)


def _passed(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline
