"""Follow one pod to its end: wait for it to start, stream its log, collect its XCom result.

`PodMonitor.run` is what `triggers.pod.PodTrigger` runs on the triggerer. It learns about the pod
from the shared watch (`kpo_async.watch`), never by polling it, except as a fallback while the
watch is unhealthy. Its result is a plain dict: the payload of the trigger's single event.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.clients import ClusterClient
from kpo_async.errors import ClusterUnreachableError, KpoAsyncError, PermissionDeniedError, XComError
from kpo_async.identity import LOG_CURSOR_ANNOTATION, XCOM_RESULT_ANNOTATION, XCOM_SIDECAR_NAME
from kpo_async.logs import ContainerLog, LogCursor
from kpo_async.pod_state import ContainerState, PodState
from kpo_async.pods import pod_events, read_pod
from kpo_async.retry import backoff_delay, describe, is_retryable, json_body, with_retries
from kpo_async.watch import Subscription, shared_watcher
from kpo_async.xcom import read_xcom, stop_sidecar

#: XCom values up to this size are recorded on the pod before the sidecar is stopped, so a trigger
#: re-created after that moment still has the value.
XCOM_ANNOTATION_LIMIT = 64 * 1024
#: How long the XCom sidecar may take to start after the base container finished.
SIDECAR_START_SECONDS = 120.0

SUCCESS, FAILED, ERROR, TIMEOUT = "success", "failed", "error", "timeout"


@dataclass(frozen=True)
class MonitorSettings:
    base_container: str = "base"
    get_logs: bool = True
    do_xcom_push: bool = False
    #: Wall-clock deadlines (epoch seconds), fixed when the task deferred: a restart keeps them.
    startup_deadline: float | None = None
    execution_deadline: float | None = None
    #: How long to trust a silent watch before reading the pod directly.
    fallback_poll_seconds: float = 60.0
    #: Beyond the shared limit of follow streams, read new log lines this often instead.
    log_poll_seconds: float = 10.0
    #: How often to record the log cursor on the pod while lines flow (0: only on exit). Each is
    #: a PATCH: 300 s keeps them near 0.2 per pod-minute; a SIGKILLed triggerer's successor
    #: repeats at most that much output (a graceful stop repeats none).
    log_checkpoint_seconds: float = 300.0
    log_tail_lines: int = 20
    log_tail_line_chars: int = 1000
    #: Log the pod's events (Scheduled, Pulling, FailedScheduling...) as they happen while it starts.
    log_events_on_startup: bool = True
    #: Env vars whose values are secrets: masked wherever this process logs (names only, no values).
    secret_env_names: tuple[str, ...] = ()


class PodMonitor:
    def __init__(
        self,
        client: ClusterClient,
        namespace: str,
        pod_name: str,
        settings: MonitorSettings,
        *,
        log_cursor: LogCursor,
        logger: Any,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.pod_name = pod_name
        self.settings = settings
        self.log = logger
        self.tail: collections.deque[str] = collections.deque(maxlen=settings.log_tail_lines)
        self.container_log = ContainerLog(
            client.log_api_client, namespace, pod_name, settings.base_container, log_cursor, self._on_log_line
        )
        self._checkpointed = log_cursor
        self._polled: PodState | None = None
        self._seen_phase: str | None = None
        self._seen_events: set[str] = set()
        self._events_read_at = 0.0
        self._masking = False
        self._log_error: BaseException | None = None
        self._base_ended = asyncio.Event()
        self._subscription: Subscription | None = None

    # -- the run -------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        self._subscription = shared_watcher(self.client, self.namespace).subscribe(self.pod_name)
        log_task: asyncio.Task[None] | None = None
        checkpoints: asyncio.Task[None] | None = None
        try:
            state = await self._wait_for_start()
            if isinstance(state, dict):
                return state
            self._resume_cursor_from(state)
            await self._mask_secret_env()
            if self.settings.get_logs:
                log_task = asyncio.create_task(self._follow_logs(), name=f"logs-{self.pod_name}")
                checkpoints = asyncio.create_task(
                    self._checkpoint_periodically(), name=f"cursor-{self.pod_name}"
                )
            state = await self._wait_for_base_container(state)
            if isinstance(state, dict):
                return state
            if log_task is not None:
                await self._finish_logs(log_task)
            return await self._complete(state)
        finally:
            for task in (log_task, checkpoints):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            self._subscription.close()

    async def _wait_for_start(self) -> PodState | dict[str, Any]:
        while True:
            state = await self._next_state(self.settings.startup_deadline)
            if state is None:
                return self._event(
                    ERROR,
                    None,
                    message=f"pod {self._pod_ref} was deleted or never created "
                    "before it started; see the pod's events",
                )
            self._report_progress(state)
            if state.started(self.settings.base_container):
                return state
            if self.settings.log_events_on_startup:
                await self._report_new_events()
            failed_init = state.failed_init()
            if failed_init is not None:
                return self._event(
                    FAILED,
                    state,
                    exit_code=failed_init.exit_code,
                    reason=failed_init.reason or "InitContainerFailed",
                    message=f"init container {failed_init.name} exited with code "
                    f"{failed_init.exit_code}: {failed_init.message or failed_init.reason}",
                )
            fatal = state.fatal_waiting()
            if fatal is not None and fatal.reason != "ErrImagePull":  # ErrImagePull may be transient
                return self._event(
                    FAILED,
                    state,
                    reason=fatal.reason,
                    message=f"container {fatal.name} cannot start: {fatal.reason}: "
                    f"{fatal.message or ''}".rstrip(": "),
                )
            if _passed(self.settings.startup_deadline):
                events = await self._event_lines()
                detail = state.unschedulable_message or (fatal.message if fatal else None) or state.phase
                return self._event(
                    TIMEOUT,
                    state,
                    reason="StartupTimeout",
                    message=f"pod {self._pod_ref} did not start before startup_timeout_seconds "
                    f"ran out ({detail}). Events: {'; '.join(events) or 'none'}",
                )

    async def _wait_for_base_container(self, state: PodState | None) -> PodState | dict[str, Any]:
        while True:
            if state is None:
                return self._event(
                    ERROR,
                    None,
                    reason="PodDeleted",
                    message=f"pod {self._pod_ref} was deleted before its container finished",
                )
            self._report_progress(state)
            base = state.container(self.settings.base_container)
            if (base is not None and base.terminated) or state.finished:
                self._base_ended.set()
                return state
            if _passed(self.settings.execution_deadline):
                return self._event(
                    TIMEOUT,
                    state,
                    reason="ExecutionTimeout",
                    message=f"pod {self._pod_ref} was still running when execution_timeout ran out",
                )
            state = await self._next_state(self.settings.execution_deadline)

    async def _complete(self, state: PodState) -> dict[str, Any]:
        base = state.container(self.settings.base_container)
        exit_code = base.exit_code if base is not None else None
        reason = (base.reason if base is not None else None) or state.reason
        succeeded = exit_code == 0 or (base is None and state.phase == "Succeeded")
        if not succeeded:
            await self._stop_sidecar_quietly(state)
            message = (base.message if base is not None else None) or state.message or ""
            return self._event(
                FAILED,
                state,
                exit_code=exit_code,
                reason=reason or "Error",
                message=f"container {self.settings.base_container} of pod {self._pod_ref} "
                f"exited with code {exit_code} ({reason}){': ' + message if message else ''}",
            )
        xcom: Any = None
        if self.settings.do_xcom_push:
            try:
                xcom = await self._collect_xcom(state)
            except KpoAsyncError as exc:
                await self._stop_sidecar_quietly(state)
                return self._event(ERROR, state, exit_code=exit_code, reason="XComError", message=str(exc))
        return self._event(SUCCESS, state, exit_code=exit_code, reason=reason, xcom=xcom)

    # -- state ---------------------------------------------------------------------------------
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
            refusal = subscription.watcher.refusal
            if refusal is not None:
                raise watch_refused(refusal, self.namespace)
            state = subscription.state
            if state is not None and (changed or subscription.watcher.healthy):
                self._polled = None
                return state
            if state is None and not (subscription.known_absent or not changed or _passed(deadline)):
                continue  # the watch has not synced yet
            return await self._read_pod()

    async def _read_pod(self) -> PodState | None:
        """Ask the API server directly; None when the pod does not exist."""
        try:
            self._polled = await read_pod(self.client, self.namespace, self.pod_name)
        except ClusterUnreachableError:
            if self._polled is None:
                raise  # nothing known at all: let the event say the cluster is unreachable
        return self._polled

    def _report_progress(self, state: PodState) -> None:
        if state.phase != self._seen_phase:
            self.log.info(f"pod {self._pod_ref} is {state.phase}")
            self._seen_phase = state.phase
        for container in (*state.init_containers, *state.containers):
            key = f"{container.name}:{container.state}:{container.reason}"
            if container.state == "waiting" and container.reason and key not in self._seen_events:
                self._seen_events.add(key)
                self.log.info(
                    f"container {container.name} waiting: {container.reason}"
                    f"{': ' + container.message if container.message else ''}"
                )
        if state.unschedulable_message and f"unsched:{state.unschedulable_message}" not in self._seen_events:
            self._seen_events.add(f"unsched:{state.unschedulable_message}")
            self.log.info(f"pod {self._pod_ref} cannot be scheduled yet: {state.unschedulable_message}")

    async def _report_new_events(self) -> None:
        """Log events not seen yet; at most one events request per second per starting pod."""
        now = time.monotonic()
        if now - self._events_read_at < 1.0:
            return
        self._events_read_at = now
        for line in await self._event_lines(new_only=True):
            self.log.info(f"pod {self._pod_ref} event: {line}")

    async def _event_lines(self, *, new_only: bool = False) -> list[str]:
        try:
            items = await pod_events(self.client, self.namespace, self.pod_name)
        except Exception as exc:
            return [f"(events unavailable: {describe(exc)})"]
        lines = []
        for item in items:
            key = f"{(item.get('metadata') or {}).get('uid')}/{item.get('count')}"
            if new_only and key in self._seen_events:
                continue
            self._seen_events.add(key)
            lines.append(f"{item.get('reason')}: {item.get('message')}")
        return lines[-10:]

    # -- logs ----------------------------------------------------------------------------------
    def _on_log_line(self, line: str) -> None:
        if self._masking:  # only tasks with secret env vars pay for redaction
            from airflow.sdk.log import redact

            line = redact(line)  # the tail also lands in the event, stored in the metadata DB
        self.log.info(f"[{self.settings.base_container}] {line}")
        self.tail.append(line[: self.settings.log_tail_line_chars])

    async def _mask_secret_env(self) -> None:
        """Register the secret env values with this process's secrets masker before any log line."""
        if not self.settings.secret_env_names:
            return
        from airflow.sdk.log import amask_secret

        wanted = set(self.settings.secret_env_names)
        pod = await with_retries(
            lambda: json_body(
                self.client.core.read_namespaced_pod(self.pod_name, self.namespace, _preload_content=False)
            ),
            what=f"reading pod {self._pod_ref}",
        )
        spec = pod.get("spec") or {}
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            for env in container.get("env") or []:
                if env.get("name") in wanted and env.get("value"):
                    await amask_secret(env["value"])
        self._masking = True

    def _resume_cursor_from(self, state: PodState) -> None:
        """Resume after the furthest point recorded: our kwargs or the pod's checkpoint annotation."""
        recorded = LogCursor.from_str(state.annotations.get(LOG_CURSOR_ANNOTATION))
        current = self.container_log.cursor
        if recorded.timestamp is not None and (
            current.timestamp is None
            or (recorded.timestamp, recorded.count_at_timestamp)
            > (current.timestamp, current.count_at_timestamp)
        ):
            self.container_log.cursor = recorded
            self._checkpointed = recorded

    async def _follow_logs(self) -> None:
        """Stream the base container's log until it has ended, resuming after every drop."""
        failures = 0
        while True:
            delivered = self.container_log.lines_delivered
            slots = self.client.log_stream_slots
            if not slots.locked():
                async with slots:
                    ended = await self._read_logs(follow=True)
            else:
                ended = await self._read_logs(follow=False)
                if not ended:  # next read after log_poll_seconds, or at once when the container ends
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._base_ended.wait(), self.settings.log_poll_seconds)
            if ended is None:
                # A stream that delivered lines before it dropped was progress, not a failure.
                failures = 1 if self.container_log.lines_delivered > delivered else failures + 1
                await asyncio.sleep(backoff_delay(self._log_error, min(failures, 6)))
                continue
            failures = 0
            if ended:
                return

    async def _read_logs(self, *, follow: bool) -> bool | None:
        """True when the container has terminated and every line was read; None after an error."""
        terminated_before = self._base_terminated()
        try:
            await self.container_log.read(follow=follow and not terminated_before)
        except asyncio.CancelledError:
            raise
        except ApiException as exc:
            # 404: the pod is gone, there is nothing more to read. 400: the container has not
            # started (or is restarting). 5xx/429: transient, retry with backoff. Any other
            # refusal (403 without pods/log, 406 ...) will not change: say so once and stop.
            if exc.status == 404:
                return True
            if exc.status == 400 or is_retryable(exc):
                self._log_error = exc
                return None
            detail = f"cannot read the log of {self._pod_ref}: HTTP {exc.status} {exc.reason}"
            if exc.status == 403:
                detail += ". Fix: grant 'get' on pods/log (see docs/rbac.md)"
            self.log.warning(detail)
            return True
        except Exception as exc:
            if not is_retryable(exc):
                raise
            self._log_error = exc
            return None
        # A read that began after termination saw everything; otherwise read once more to be sure.
        return terminated_before

    def _base_terminated(self) -> bool:
        state = (self._subscription.state if self._subscription else None) or self._polled
        if state is None:
            return False
        base = state.container(self.settings.base_container)
        return state.finished or (base is not None and base.terminated)

    async def _finish_logs(self, task: asyncio.Task[None]) -> None:
        try:
            await asyncio.wait_for(task, timeout=60)
        except asyncio.TimeoutError:
            self.log.warning(f"gave up waiting for the rest of {self._pod_ref}'s log")
        except Exception as exc:
            self.log.warning(f"could not read the rest of {self._pod_ref}'s log: {describe(exc)}")

    async def _checkpoint_periodically(self) -> None:
        """While lines flow, record the cursor now and then, bounding what a crash can repeat."""
        if not self.settings.log_checkpoint_seconds:
            return
        while True:
            await asyncio.sleep(self.settings.log_checkpoint_seconds)
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Record the log cursor on the pod so a re-created trigger resumes after the last line."""
        cursor = self.container_log.cursor
        if cursor == self._checkpointed or cursor.timestamp is None:
            return
        with contextlib.suppress(Exception):
            await self._annotate({LOG_CURSOR_ANNOTATION: cursor.to_str()})
            self._checkpointed = cursor

    @property
    def log_cursor(self) -> LogCursor:
        return self.container_log.cursor

    # -- xcom ----------------------------------------------------------------------------------
    async def _collect_xcom(self, state: PodState) -> Any:
        recorded = state.annotations.get(XCOM_RESULT_ANNOTATION)
        if recorded is not None:
            return json.loads(recorded)  # read by an earlier incarnation of this trigger
        await self._wait_for_sidecar(state)
        value = await read_xcom(self.client, self.namespace, self.pod_name)
        encoded = json.dumps(value)
        if len(encoded) <= XCOM_ANNOTATION_LIMIT:
            await self._annotate({XCOM_RESULT_ANNOTATION: encoded})
        await stop_sidecar(self.client, self.namespace, self.pod_name)
        return value

    async def _wait_for_sidecar(self, state: PodState | None) -> None:
        """A base container can finish before the sidecar has even started: wait for it to run."""
        deadline = time.time() + SIDECAR_START_SECONDS
        while True:
            sidecar = state.container(XCOM_SIDECAR_NAME) if state is not None else None
            if sidecar is not None and sidecar.state == "running":
                return
            # Statuses list every container of the spec once scheduled: none means no sidecar at all.
            no_sidecar = state is not None and state.containers and sidecar is None
            if (
                state is None
                or no_sidecar
                or (sidecar is not None and sidecar.terminated)
                or _passed(deadline)
            ):
                raise XComError(self._sidecar_problem(state, sidecar))
            state = await self._next_state(deadline)

    def _sidecar_problem(self, state: PodState | None, sidecar: ContainerState | None) -> str:
        """Why the XCom cannot be read, blaming the user only when the pod spec is at fault."""
        what = f"cannot read the XCom result of {self._pod_ref}: the {XCOM_SIDECAR_NAME} container"
        if state is None:
            return f"{what} is gone with its pod (deleted before the result was read)"
        if state.reason or state.message:  # e.g. Evicted: the node took the pod away
            return f"{what} stopped because the pod was {state.reason}: {state.message or ''}".rstrip(": ")
        if sidecar is None:
            return (
                f"{what} is missing from the pod. Fix: keep the sidecar do_xcom_push adds "
                "(a pod_template_file or full_pod_spec must not replace the containers list)"
            )
        return f"{what} is {sidecar.state} ({sidecar.reason or 'no reason given'}) and cannot be read"

    async def _stop_sidecar_quietly(self, state: PodState) -> None:
        if not self.settings.do_xcom_push or state.finished:
            return
        try:
            await stop_sidecar(self.client, self.namespace, self.pod_name)
        except Exception as exc:  # the pod is being cleaned up by the operator anyway
            self.log.warning(f"could not stop the XCom sidecar of {self._pod_ref}: {describe(exc)}")

    async def _annotate(self, annotations: dict[str, str]) -> None:
        body = {"metadata": {"annotations": annotations}}
        await with_retries(
            lambda: self.client.core.patch_namespaced_pod(
                self.pod_name, self.namespace, body, _content_type="application/merge-patch+json"
            ),
            what=f"annotating pod {self._pod_ref}",
        )

    # -- the event -----------------------------------------------------------------------------

    @property
    def _pod_ref(self) -> str:
        return f"{self.namespace}/{self.pod_name}"

    def _event(
        self,
        status: str,
        state: PodState | None,
        *,
        exit_code: int | None = None,
        reason: str | None = None,
        message: str = "",
        xcom: Any = None,
    ) -> dict[str, Any]:
        return {
            "status": status,
            "namespace": self.namespace,
            "pod_name": self.pod_name,
            "pod_uid": state.uid if state else None,
            "phase": state.phase if state else None,
            "exit_code": exit_code,
            "reason": reason,
            "message": message,
            "xcom": xcom if status == SUCCESS else None,
            "log_tail": list(self.tail) if status != SUCCESS else [],
            "log_cursor": self.container_log.cursor.to_str(),
        }


def watch_refused(exc: ApiException, namespace: str) -> KpoAsyncError:
    """The error for a list/watch the API server refuses, naming what to fix."""
    if exc.status == 403:
        return PermissionDeniedError(
            f"watching pods in namespace {namespace} was forbidden (403) for the triggerer's identity. "
            "Fix: grant 'list' and 'watch' on pods in the Role (see docs/rbac.md)"
        )
    if exc.status == 401:
        return KpoAsyncError(
            f"the API server refused the triggerer's credentials (401) for namespace {namespace}. "
            "Fix: check the connection's kubeconfig / token on the triggerer host"
        )
    return KpoAsyncError(f"namespace {namespace} was not found (404) while watching its pods")


def _passed(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline
