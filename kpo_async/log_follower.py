"""Follow a pod's base container log to its end, with a cursor that survives triggerer restarts.

`LogFollower` streams the log (or, past the cluster's limit of follow streams, reads it now and
then), resumes after every drop without repeating a line, keeps the last lines for a failure
message, masks secret env values, and records its cursor on the pod (annotation) from time to time
so that a re-created trigger resumes where this one stopped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import Any

from kpo_async.clients import ClusterClient
from kpo_async.errors import ApiError, Forbidden, NotFound
from kpo_async.identity import LOG_CURSOR_ANNOTATION
from kpo_async.logs import ContainerLog, LogCursor
from kpo_async.pod_state import PodState
from kpo_async.pods import patch_metadata, read_pod_json
from kpo_async.retry import backoff_delay, describe, is_retryable

TAIL_LINES = 20
TAIL_LINE_CHARS = 1000
#: How long the rest of the log may take to arrive once the container has ended.
FINISH_SECONDS = 60.0


class LogFollower:
    def __init__(
        self,
        client: ClusterClient,
        namespace: str,
        pod_name: str,
        container: str,
        cursor: LogCursor,
        *,
        logger: Any,
        terminated: Callable[[], bool],
        poll_seconds: float = 10.0,
        checkpoint_seconds: float = 300.0,
    ) -> None:
        self.client = client
        self.pod_ref = f"{namespace}/{pod_name}"
        self.log = logger
        self.container = container
        #: Whether the container has ended, as far as the pod's latest known state says.
        self._terminated = terminated
        self.poll_seconds = poll_seconds
        self.checkpoint_seconds = checkpoint_seconds
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.container_log = ContainerLog(
            client.log_api_client, namespace, pod_name, container, cursor, self._on_line
        )
        self._checkpointed = cursor
        self._redact: Callable[..., Any] | None = None
        self._error: BaseException | None = None
        self._ended = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: Told each line (container name, line) as it is logged, e.g. for ``progress_callback``.
        self.line_listener: Callable[[str, str], None] | None = None

    @property
    def cursor(self) -> LogCursor:
        return self.container_log.cursor

    def resume_from(self, state: PodState) -> None:
        """Resume after the furthest point recorded: our own cursor or the pod's checkpoint."""
        recorded = LogCursor.from_str(state.annotations.get(LOG_CURSOR_ANNOTATION))
        current = self.cursor
        if recorded.timestamp is not None and (
            current.timestamp is None
            or (recorded.timestamp, recorded.count_at_timestamp)
            > (current.timestamp, current.count_at_timestamp)
        ):
            self.container_log.cursor = self._checkpointed = recorded

    async def mask_secret_env(self, names: tuple[str, ...]) -> None:
        """Register the values of the env vars `names` with this process's secrets masker."""
        if not names:
            return
        from kpo_async.airflow_compat import amask_secret, redact

        namespace, _, name = self.pod_ref.partition("/")
        pod = await read_pod_json(self.client, namespace, name) or {}
        spec = pod.get("spec") or {}
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            for env in container.get("env") or []:
                if env.get("name") in names and env.get("value"):
                    await amask_secret(env["value"])
        self._redact = redact  # only tasks with secret env vars pay for redaction

    def _on_line(self, line: str) -> None:
        if self._redact is not None:
            line = self._redact(line)  # the tail also lands in the event, stored in the metadata DB
        self.log.info(f"[{self.container}] {line}")
        self.tail.append(line[:TAIL_LINE_CHARS])
        if self.line_listener is not None:
            self.line_listener(self.container, line)

    # -- the background work -----------------------------------------------------------------
    def start(self) -> None:
        name = self.pod_ref.replace("/", "-")
        self._tasks = [asyncio.create_task(self.follow(), name=f"logs-{name}")]
        if self.checkpoint_seconds:
            self._tasks.append(asyncio.create_task(self._checkpoint_periodically(), name=f"cursor-{name}"))

    async def finish(self) -> None:
        """The container has ended: wait (bounded) for the rest of its log."""
        self._ended.set()
        if not self._tasks:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._tasks[0]), timeout=FINISH_SECONDS)
        except asyncio.TimeoutError:
            self.log.warning(f"gave up waiting for the rest of {self.pod_ref}'s log")
        except Exception as exc:
            self.log.warning(f"could not read the rest of {self.pod_ref}'s log: {describe(exc)}")

    async def stop(self) -> None:
        for task in self._tasks:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def follow(self) -> None:
        """Read the log until the container has ended and every line was read, resuming after drops."""
        failures = 0
        while True:
            delivered = self.container_log.lines_delivered
            slots = self.client.log_stream_slots
            if not slots.locked():
                async with slots:
                    ended = await self._read(follow=True)
            else:
                ended = await self._read(follow=False)
                if not ended:  # next read after poll_seconds, or at once when the container ends
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._ended.wait(), self.poll_seconds)
            if ended is None:
                # A stream that delivered lines before it dropped was progress, not a failure.
                failures = 1 if self.container_log.lines_delivered > delivered else failures + 1
                await asyncio.sleep(backoff_delay(self._error, min(failures, 6)))
                continue
            failures = 0
            if ended:
                return

    async def _read(self, *, follow: bool) -> bool | None:
        """True when the container has ended and every line was read; None after a transient error."""
        terminated_before = self._terminated()
        try:
            await self.container_log.read(follow=follow and not terminated_before)
        except NotFound:
            return True  # the pod is gone: there is nothing more to read
        except Exception as exc:
            # 400: the container has not started (or is restarting); 5xx/429 and dropped
            # connections: transient. Any other refusal (403 without pods/log ...) will not change:
            # say so once and stop.
            if (isinstance(exc, ApiError) and exc.status == 400) or is_retryable(exc):
                self._error = exc
                return None
            if not isinstance(exc, ApiError):
                raise
            fix = ". Fix: grant 'get' on pods/log (see docs/rbac.md)" if isinstance(exc, Forbidden) else ""
            self.log.warning(f"cannot read the log of {self.pod_ref}: {describe(exc)}{fix}")
            return True
        # A read that began after termination saw everything; otherwise read once more to be sure.
        return terminated_before

    async def _checkpoint_periodically(self) -> None:
        """While lines flow, record the cursor now and then, bounding what a crash can repeat."""
        while True:
            await asyncio.sleep(self.checkpoint_seconds)
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Record the cursor on the pod so a re-created trigger resumes after the last line."""
        cursor = self.cursor
        if cursor == self._checkpointed or cursor.timestamp is None:
            return
        namespace, _, name = self.pod_ref.partition("/")
        try:
            await patch_metadata(
                self.client,
                namespace,
                name,
                what="recording the log cursor on",
                annotations={LOG_CURSOR_ANNOTATION: cursor.to_str() or ""},
            )
        except Exception as exc:  # a lost checkpoint only means repeated lines after a restart
            self.log.warning(f"could not record the log cursor of {self.pod_ref}: {describe(exc)}")
            return
        self._checkpointed = cursor
