"""User callbacks: the official provider's ``KubernetesPodOperatorCallback`` API, at our moments.

On the worker (the operator's ``_callback``): the moments the official operator calls in
deferrable mode, with the same method names and keyword arguments (``mode="sync"`` there, as the
official). On the triggerer (`TriggerCallbacks`): the moments the official never calls in deferrable mode
(``on_pod_starting``, ``progress_callback`` for each log line) with ``mode="async"``. The trigger
carries the classes' import paths; a class the triggerer cannot import is skipped with one
warning. Sync callbacks run in a thread, bounded in time, so the triggerer's loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import pkgutil
from collections.abc import Sequence
from typing import Any

#: How long one callback call may take on the triggerer before it is left behind.
CALL_SECONDS = 30.0
#: Log lines waiting for ``progress_callback``; beyond it lines are dropped (with a warning).
LINE_QUEUE = 1000


@functools.cache  # asked at every call, on the triggerer's loop: a failed import is not retried
def execution_mode(name: str) -> Any:
    """The official ``ExecutionMode`` member called `name` (a ``str`` enum), or `name` itself.

    Callback classes subclass the official ``KubernetesPodOperatorCallback``, so the provider is
    normally importable here; without it the plain string compares equal all the same.
    """
    try:
        from airflow.providers.cncf.kubernetes.callbacks import ExecutionMode
    except ImportError:
        return name
    return ExecutionMode(name)


def classpaths(callbacks: Sequence[Any]) -> tuple[str, ...]:
    """Import paths of the callback classes, for the trigger's kwargs."""
    classes = [c if inspect.isclass(c) else type(c) for c in callbacks]
    return tuple(f"{c.__module__}.{c.__qualname__}" for c in classes)


class TriggerCallbacks:
    """The callbacks of one trigger: imported from their paths, called off the event loop."""

    def __init__(self, paths: Sequence[str], logger: Any) -> None:
        self.log = logger
        self.paths = tuple(paths)
        self.targets: list[Any] = []  # filled by `load`
        self._lines: asyncio.Queue[tuple[str, str]] = asyncio.Queue(LINE_QUEUE)
        self._drain: asyncio.Task[None] | None = None
        self._dropped = False
        self.pod: Any = None
        self.client: Any = None

    async def load(self) -> None:
        """Import the classes (as `pkgutil.resolve_name` reads their paths), off the event loop: an
        import reads and runs files."""
        for path in self.paths:
            try:
                self.targets.append(await asyncio.to_thread(pkgutil.resolve_name, path))
            except Exception as exc:
                self.log.warning(
                    "callback %s cannot be imported on the triggerer (%r): its on_pod_starting and "
                    "progress_callback are skipped. Fix: define the class in a module installed on the "
                    "triggerer, not in the DAG file",
                    path,
                    exc,
                )

    async def call(self, method: str, **kwargs: Any) -> None:
        kwargs = {"client": self.client, "mode": execution_mode("async"), "pod": self.pod, **kwargs}
        for function in filter(None, (getattr(target, method, None) for target in self.targets)):
            try:
                is_async = inspect.iscoroutinefunction(function)
                running = function(**kwargs) if is_async else asyncio.to_thread(function, **kwargs)
                await asyncio.wait_for(running, CALL_SECONDS)
            except Exception as exc:  # a callback never stops the pod being followed
                self.log.warning("callback %s failed: %r", function.__qualname__, exc)

    def line(self, container: str, line: str) -> None:
        """A log line for ``progress_callback``: queued, never awaited by the log reader."""
        if not any(hasattr(t, "progress_callback") for t in self.targets):
            return
        if self._drain is None:
            self._drain = asyncio.create_task(self._deliver(), name="progress-callbacks")
        try:
            self._lines.put_nowait((container, line))
        except asyncio.QueueFull:
            if not self._dropped:
                self._dropped = True
                self.log.warning("progress_callback is slower than the log: some lines are not passed to it")

    async def _deliver(self) -> None:
        while True:
            container, line = await self._lines.get()
            await self.call("progress_callback", line=line, container_name=container, timestamp=None)
            self._lines.task_done()

    async def close(self) -> None:
        """Deliver the queued lines (bounded), then stop."""
        if self._drain is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._lines.join(), CALL_SECONDS)
        self._drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._drain
