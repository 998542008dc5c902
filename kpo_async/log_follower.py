"""Follow the logs of a pod's requested containers to their end, with cursors that survive restarts.

`PodLogs` starts one `ContainerFollower` per requested container (init containers included) once
that container has started. Each streams its log (or, past the cluster's limit of follow streams,
reads it now and then) and resumes after every drop without repeating a line. `PodLogs` logs each
line at the level the line names, keeps the last lines for a failure message, masks secret env
values, and records every container's cursor on the pod, together in one annotation, now and then,
so that a re-created trigger resumes where this one stopped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import pkgutil
import re
from collections.abc import Callable
from typing import Any

import aiohttp

from kpo_async.api import open_response
from kpo_async.clients import ClusterClient
from kpo_async.errors import ApiError, NotFound
from kpo_async.identity import LOG_CURSOR_ANNOTATION, XCOM_SIDECAR_NAME
from kpo_async.log_records import LineBatcher, wait_until_read
from kpo_async.logs import LineSplitter, LogCursor, cursors_from_str, cursors_to_str, decode_line
from kpo_async.pod_state import PodState
from kpo_async.pods import container_env, patch_metadata, read_pod_json
from kpo_async.retry import backoff_delay, describe, is_retryable
from kpo_async.trigger_settings import ContainerSelection, MonitorSettings

TAIL_LINES = 20
TAIL_LINE_CHARS = 1000
#: How long the rest of the logs may take to arrive once their containers have ended.
FINISH_SECONDS = 60.0
LATE_START_POLL_SECONDS = 0.2
#: A line that starts with a level name (``ERROR:``, ``[WARNING]``, ``warn -``) is logged at it.
_LEVEL_PREFIX = re.compile(r"\s*\[?(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)", re.IGNORECASE)
_LEVELS = {"warn": "warning", "fatal": "critical"}
Formatter = Callable[[str, str], str]
#: A real kubelet answers a log request for a container it already removed (a pod being deleted) with
#: 200 and this text, without a timestamp, in place of the log (docs/real-control-plane.md).
KUBELET_LOG_GONE = "unable to retrieve container logs for "


def line_level(line: str) -> str:
    """The name of the logger method for `line`: ``info`` unless the line starts with a level."""
    match = _LEVEL_PREFIX.match(line)
    level = match.group(1).lower() if match else "info"
    return _LEVELS.get(level, level)


def formatter_path(formatter: Formatter | None) -> str | None:
    """Where the triggerer can import `formatter` from (``module:qualname``), if anywhere."""
    qualname = getattr(formatter, "__qualname__", "<>")
    module = getattr(formatter, "__module__", None)
    if formatter is None or "<" in qualname or not module or module == "__main__":
        return None
    return f"{module}:{qualname}"


def _wants(requested: ContainerSelection, name: str) -> bool:
    """`container_logs`/`init_container_logs` semantics: True (all but the XCom sidecar), a name, or names."""
    if requested is True:
        return name != XCOM_SIDECAR_NAME
    return name == requested or (isinstance(requested, (list, tuple, set)) and name in requested)


class ContainerFollower:
    """One container's log, read to its end across dropped streams, from a cursor that moves forward
    as each line is delivered: current even when a read fails half-way, so the next read resumes
    exactly there."""

    #: `follow`, started by `PodLogs`.
    task: asyncio.Task[None]

    def __init__(self, logs: PodLogs, container: str, cursor: LogCursor) -> None:
        self.logs = logs
        self.name = container
        self.cursor = cursor
        self.ended = asyncio.Event()
        #: During a read: the last line's place in it (its timestamp, and how many lines of the read
        #: had it), and the cursor the read started from while its lines repeat earlier reads' lines.
        self._place = LogCursor()
        self._repeats: LogCursor | None = None

    async def follow(self) -> None:
        """Read the log until the container has ended and every line was read, resuming after drops."""
        failures = 0
        while True:
            cursor = self.cursor
            ended_before = self.logs.container_ended(self.name)
            slots = self.logs.client.log_stream_slots
            polling = slots.locked()  # past the cluster's limit of follow streams: read now and then
            try:
                async with contextlib.nullcontext() if polling else slots:
                    await self.read(follow=not (polling or ended_before))
            except NotFound:
                return  # the pod is gone: there is nothing more to read
            except Exception as exc:
                # 400: the container has not started (or is restarting); 5xx/429 and dropped
                # connections: transient. Any other refusal (403 without pods/log ...) will not
                # change: say so once and stop.
                if not ((isinstance(exc, ApiError) and exc.status == 400) or is_retryable(exc)):
                    if not isinstance(exc, ApiError):
                        raise
                    # A 403 names the verb and resource the Role lacks, and the fix.
                    self.logs.log.warning("the log of container %s stays unread: %s", self.name, exc)
                    return
                # A stream that delivered lines before it dropped was progress, not a failure.
                failures = 1 if self.cursor != cursor else failures + 1
                await asyncio.sleep(backoff_delay(exc, min(failures, 6)))
                continue
            if ended_before:
                return  # a read that began after the container ended saw everything
            failures = 0  # else read once more, to be sure
            if polling:  # next read after poll_seconds, or at once when the container ends
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.ended.wait(), self.logs.settings.log_poll_seconds)

    async def read(self, *, follow: bool) -> None:
        """Deliver the lines after the cursor; with `follow`, until the stream ends.

        A followed stream ends when the container terminates or when the connection drops; the
        caller tells them apart by the pod's state. HTTP errors raise `kpo_async.errors.ApiError`s.
        """
        logs = self.logs
        query = [("container", self.name), ("timestamps", "true"), ("follow", str(follow).lower())]
        if self.cursor.timestamp:
            # The generated client has no sinceTime parameter, hence the raw call.
            query.append(("sinceTime", self.cursor.since_time()))
        response = await open_response(
            logs.client.log_api_client.call_api(
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                "GET",
                path_params={"namespace": logs.namespace, "name": logs.pod_name},
                query_params=query,
                # The API server refuses text/plain here (406); "*/*" gets the plain-text log.
                header_params={"Accept": "*/*"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                # No read timeout: a quiet container may print nothing for hours.
                _request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            ),
            what=f"reading the log of {logs.pod_ref}",
            verb="get",
            resource="pods/log",
        )
        # The read starts at the cursor's whole second: it repeats every line up to the cursor.
        self._place, self._repeats = LogCursor(), self.cursor
        splitter = LineSplitter()
        async with response:  # released on the way out
            async for chunk in response.content.iter_any():
                self._deliver(splitter.feed(chunk))
                await asyncio.sleep(0)  # a chatty pod must not monopolise the loop
            self._deliver(splitter.flush())

    def _deliver(self, lines: list[tuple[bytes, int]]) -> None:
        for raw, dropped in lines:
            stamp, text = decode_line(raw, dropped)
            if stamp is None:
                if not text.startswith(KUBELET_LOG_GONE):  # the kubelet's note that the container is gone
                    self.logs.on_line(self.name, text)
                continue
            last = self._place
            self._place = LogCursor(stamp, last.count_at_timestamp + 1 if stamp == last.timestamp else 1)
            if self._repeats is not None:
                if self._place <= self._repeats:
                    continue
                self._repeats = None  # past the cursor: later lines are new, whatever their stamps
            self.logs.on_line(self.name, text)
            self.cursor = self._place


class PodLogs:
    """The logs of the requested containers of one pod: one follower and one cursor per container.

    :param state: the pod's latest known state (tells when a container has ended).
    :param settings: whose logs to follow (``get_logs``, ``container_logs``,
        ``init_container_logs``), how to log and mask their lines, how often to poll and checkpoint.
    :param formatter: the task's `log_formatter` itself (a worker has it), else the one at
        ``settings.log_formatter``.
    """

    def __init__(
        self,
        client: ClusterClient,
        namespace: str,
        pod_name: str,
        settings: MonitorSettings,
        cursor: str | None,
        *,
        logger: Any,
        state: Callable[[], PodState | None],
        formatter: Formatter | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.pod_name = pod_name
        self.pod_ref = f"{namespace}/{pod_name}"
        self.base = settings.base_container_name
        self.log = logger
        self._state = state
        self.settings = settings
        self._formatter: Formatter | str | None = formatter or settings.log_formatter
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.followers: dict[str, ContainerFollower] = {}
        self._cursors = cursors_from_str(cursor, self.base)
        self._checkpointed = self.cursor
        self._redact: Callable[..., Any] | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        #: Told each line (container name, line) as it is logged, e.g. for ``progress_callback``.
        self.line_listener: Callable[[str, str], None] | None = None
        self._records = LineBatcher(lambda level, text: getattr(self.log, level)(text))
        self._read_back = 0

    @property
    def cursor(self) -> str | None:
        """Every container's cursor, as stored in trigger kwargs and the pod's annotation."""
        current = {**self._cursors, **{n: f.cursor for n, f in self.followers.items()}}
        return cursors_to_str(current, self.base)

    async def update(self, state: PodState) -> bool:
        """Start following each requested container that has started since the last state; True
        while a requested container is still waiting to start."""
        # The main containers to follow (``container_logs`` semantics; None: none) and the init
        # containers (``init_container_logs`` semantics).
        containers = (self.settings.container_logs or self.base) if self.settings.get_logs else None
        wanted = [
            *(c for c in state.init_containers if _wants(self.settings.init_container_logs, c.name)),
            *(c for c in state.containers if _wants(containers, c.name)),
        ]
        for name in (c.name for c in wanted if c.running_or_done and c.name not in self.followers):
            if not self.followers:
                await self._prepare(state)
            cursor = self._cursors.get(name, LogCursor())
            follower = self.followers[name] = ContainerFollower(self, name, cursor)
            follower.task = asyncio.create_task(follower.follow(), name=f"logs-{self.pod_ref}-{name}")
        return any(c.name not in self.followers for c in wanted)

    async def _prepare(self, state: PodState) -> None:
        """Before the first follower starts: resume from the pod's checkpoint, register the values
        of the secret env vars with this process's secrets masker, import the formatter, start the
        periodic checkpoints."""
        recorded = cursors_from_str(state.annotations.get(LOG_CURSOR_ANNOTATION), self.base)
        for name, cursor in recorded.items():
            self._cursors[name] = max(cursor, self._cursors.get(name, LogCursor()))
        self._checkpointed = self.cursor
        if self.settings.secret_env_names:  # only tasks with secret env vars pay for redaction
            from kpo_async.airflow_compat import amask_secret, redact

            for env in container_env(await read_pod_json(self.client, self.namespace, self.pod_name) or {}):
                if env.get("name") in self.settings.secret_env_names and env.get("value"):
                    await amask_secret(env["value"])
            self._redact = redact
        if isinstance(self._formatter, str):
            try:
                self._formatter = await asyncio.to_thread(pkgutil.resolve_name, self._formatter)
            except Exception as exc:
                self.log.warning(
                    "log_formatter %s cannot be imported on this host (%s): lines are logged as "
                    "[container] line instead (see docs/arguments.md#log_formatter)",
                    self._formatter,
                    describe(exc),
                )
                self._formatter = None
        if self.settings.log_checkpoint_seconds:
            checkpoints = self._checkpoint_periodically()
            self._checkpoints = asyncio.create_task(checkpoints, name=f"cursor-{self.pod_ref}")

    def container_ended(self, name: str) -> bool:
        state = self._state()
        return state is not None and state.ended(name)

    def on_line(self, container: str, line: str) -> None:
        if self._redact is not None:
            line = self._redact(line)  # the tail also lands in the event, stored in the metadata DB
        text = f"[{container}] {line}" if self.settings.container_name_log_prefix_enabled else line
        if callable(self._formatter):
            with contextlib.suppress(Exception):  # a broken formatter must not lose the line
                text = str(self._formatter(container, line))
        self._records.add(line_level(line), text)
        self.tail.append((line if container == self.base else f"[{container}] {line}")[:TAIL_LINE_CHARS])
        if self.line_listener is not None:
            self.line_listener(container, line)

    async def finish(self) -> None:
        """The base container has ended: wait (bounded) for the rest of each ended container's log;
        of a container still running (a sidecar), deliver what it has printed so far."""
        # The kubelet starts containers one by one: a sidecar may start after a quick base container
        # ended. The requested containers still on their way get a bounded while to start, unless the
        # pod finished or its base container runs on; a sidecar that cannot start will not in time.
        deadline = asyncio.get_running_loop().time() + FINISH_SECONDS
        while (state := self._state()) is not None and asyncio.get_running_loop().time() < deadline:
            waiting = await self.update(state)
            if not waiting or state.finished or not state.ended(self.base) or state.fatal_waiting():
                break
            await asyncio.sleep(LATE_START_POLL_SECONDS)  # the shared watch keeps the state current
        running = [f for f in self.followers.values() if not f.task.done()]
        ended = [f for f in running if self.container_ended(f.name)]
        for follower in ended:
            follower.ended.set()
        if ended and (await asyncio.wait([f.task for f in ended], timeout=FINISH_SECONDS))[1]:
            self.log.warning("gave up waiting for the rest of %s's log", self.pod_ref)
        for follower in (f for f in running if f not in ended):
            follower.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follower.task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(follower.read(follow=False), FINISH_SECONDS)
        self._records.flush()
        if self._records.records > self._read_back:  # the last lines reach the task's log
            self._read_back = self._records.records  # before the trigger ends
            await wait_until_read()

    async def stop(self) -> None:
        tasks = [task for task in [self._checkpoints, *(f.task for f in self.followers.values())] if task]
        for task in tasks:
            task.cancel()  # no effect on a task that is done
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                self.log.warning("could not read the rest of %s's log: %s", self.pod_ref, describe(result))
        self._records.flush()

    async def _checkpoint_periodically(self) -> None:
        """While lines flow, record the cursors now and then, bounding what a crash can repeat."""
        while True:
            await asyncio.sleep(self.settings.log_checkpoint_seconds)
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Record the cursors on the pod so a re-created trigger resumes after the last lines."""
        self._records.flush()  # the cursor must not pass a line that is not written yet
        cursor = self.cursor
        if cursor == self._checkpointed or cursor is None:
            return
        try:
            await patch_metadata(
                self.client,
                self.namespace,
                self.pod_name,
                what="recording the log cursor on",
                annotations={LOG_CURSOR_ANNOTATION: cursor},
            )
            self._checkpointed = cursor
        except Exception as exc:  # a lost checkpoint only means repeated lines after a restart
            self.log.warning("could not record the log cursor of %s: %s", self.pod_ref, describe(exc))
