"""One shared list+watch of our pods per (cluster, namespace), fanned out to every trigger.

A triggerer carrying a thousand deferred pods in one namespace keeps exactly one watch stream
open there instead of polling each pod. The watcher lists the namespace's managed pods, then
watches from the list's resourceVersion with bookmarks; on ``410 Gone`` it re-lists, on errors it
backs off with jitter. Each subscriber sees the latest `PodState` of one pod by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
import weakref
from typing import Any

import aiohttp

from kpo_async.api import error_for, open_response
from kpo_async.clients import ClusterClient
from kpo_async.connection import ClusterRef
from kpo_async.errors import ApiError, Forbidden, Gone, KpoAsyncError, PermissionDeniedError
from kpo_async.identity import MANAGED_LABEL
from kpo_async.pod_state import PodState
from kpo_async.retry import backoff_delay, describe, is_retryable

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # aiohttp's own dependency there
    from async_timeout import timeout as _timeout  # type: ignore[import-not-found]

log = logging.getLogger(__name__)

MANAGED_SELECTOR = f"{MANAGED_LABEL}=true"
#: The server ends each watch request after this long (a fresh one resumes from the last version).
WATCH_SECONDS = 290
#: A watch silent for this long (no event, no bookmark) is considered stalled.
STALL_SECONDS = 150.0
#: How long the watch outlives its last subscriber (a new trigger often follows soon).
LINGER_SECONDS = 30.0


class Subscription:
    """One trigger's view of one pod in a shared watch."""

    def __init__(self, watcher: PodWatcher, name: str) -> None:
        self.watcher = watcher
        self.name = name
        self._changed = asyncio.Event()
        self._changed.set()  # the first wait returns at once with what the watcher knows

    @property
    def state(self) -> PodState | None:
        return self.watcher.states.get(self.name)

    @property
    def known_absent(self) -> bool:
        """The watcher is in sync and has no such pod: it does not exist (or was deleted)."""
        return self.watcher.synced.is_set() and self.name not in self.watcher.states

    async def wait(self, timeout: float | None) -> bool:
        """Wait for a change to this pod; False when `timeout` passed without one.

        A timeout context, not `wait_for`: before Python 3.12 `wait_for` can return the change
        instead of raising when the task is cancelled as the change arrives, and a trigger would
        outlive its cancellation (the soak saw it). Without a timeout it sets no timer: thousands
        of idle triggers cost no timers, tasks or exceptions.
        """
        try:
            async with _timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            return False
        self._changed.clear()
        return True


class PodWatcher:
    """List+watch of managed pods in one namespace of one cluster, shared by its subscribers."""

    def __init__(self, client: ClusterClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.states: dict[str, PodState] = {}
        #: The last state of followed pods the cluster took away and deleted, for their monitors.
        self.taken_away: dict[str, PodState] = {}
        self.synced = asyncio.Event()
        self.last_contact = 0.0
        #: The API server's refusal (401/403/404) of the last list, until a list succeeds again.
        self.refusal: ApiError | None = None
        self._subscribers: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._idle_since: float | None = None

    # -- subscriptions -------------------------------------------------------------------------
    def subscribe(self, name: str) -> Subscription:
        subscription = Subscription(self, name)
        self._subscribers.setdefault(name, set()).add(subscription)
        self._idle_since = None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"kpo-async-watch-{self.namespace}")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.name, set())
        subscribers.discard(subscription)
        if not subscribers:
            self._subscribers.pop(subscription.name, None)
            self.taken_away.pop(subscription.name, None)
        if not self._subscribers:
            self._idle_since = time.monotonic()

    @property
    def healthy(self) -> bool:
        return self.synced.is_set() and time.monotonic() - self.last_contact < STALL_SECONDS

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- the list+watch loop -------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while not self._should_stop():
            try:
                resource_version = await self._list()
                self.refusal = None
                failures = 0
                while not self._should_stop():
                    resource_version = await self._watch(resource_version)
            except Gone:
                log.info("watch of %s expired (410 Gone): re-listing", self.namespace)
            except Exception as exc:  # (a cancellation is no Exception: it ends the loop)
                if isinstance(exc, ApiError) and exc.status in (401, 403, 404):
                    # Refused credentials or a missing namespace will not fix themselves soon:
                    # tell the subscribers now instead of at their fallback read. Keep trying,
                    # so that a fixed Role or a re-created namespace resumes the watch.
                    self.refusal = exc
                if not is_retryable(exc) and not isinstance(exc, (ValueError, KeyError)):
                    log.warning("watch of %s failed: %s", self.namespace, describe(exc))
                failures += 1
                self.synced.clear()
                # Subscribers wait without a timer while the watch is healthy: wake them so they
                # fall back to reading their pods until it recovers (or learn of the refusal).
                for name in list(self._subscribers):
                    self._notify(name)
                delay = backoff_delay(exc, min(failures, 6))
                log.info(
                    "watch of %s interrupted (%s); retrying in %.1fs", self.namespace, describe(exc), delay
                )
                await asyncio.sleep(delay)

    def _should_stop(self) -> bool:
        return self._idle_since is not None and time.monotonic() - self._idle_since > LINGER_SECONDS

    async def _list(self) -> str:
        seen: dict[str, PodState] = {}
        continue_token: str | None = None
        while True:
            page = {"_continue": continue_token} if continue_token else {}
            kwargs: dict[str, Any] = {"label_selector": MANAGED_SELECTOR, "limit": 500, **page}
            response = await open_response(
                self.client.core.list_namespaced_pod(self.namespace, _preload_content=False, **kwargs),
                what=f"listing pods in namespace {self.namespace}",
                verb="list",
            )
            body = json.loads(await response.read())
            seen.update((state.name, state) for state in map(PodState.from_api, body.get("items") or []))
            if not (continue_token := (body.get("metadata") or {}).get("continue")):
                break
        changed = {n for n, s in seen.items() if self.states.get(n) != s}
        self.states = seen
        self.last_contact = time.monotonic()
        self.synced.set()
        # Subscribers learn of their changed pods, and of pods the list does not have (gone or absent).
        for name in changed | (set(self._subscribers) - set(seen)):
            self._notify(name)
        return str(body.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, resource_version: str) -> str:
        response = await open_response(
            self.client.core.list_namespaced_pod(
                self.namespace,
                label_selector=MANAGED_SELECTOR,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=STALL_SECONDS),
            ),
            what=f"watching pods in namespace {self.namespace}",
            verb="watch",
        )
        async with response:  # released on the way out
            async for line in response.content:  # one JSON event per line
                if line.strip():
                    resource_version = self._apply(json.loads(line)) or resource_version
                if self._should_stop():
                    break
        return resource_version

    def _apply(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        obj = event.get("object") or {}
        self.last_contact = time.monotonic()
        if kind == "ERROR":  # a Status object: 410 when the resourceVersion is too old
            what = f"watching pods in {self.namespace}"
            raise error_for(obj.get("code") or 500, json.dumps(obj), what=what, verb="watch", resource="pods")
        resource_version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            return resource_version
        state = PodState.from_api(obj)
        if kind == "DELETED":
            self.states.pop(state.name, None)
            if state.disruption and state.name in self._subscribers:
                self.taken_away[state.name] = state
        else:
            self.states[state.name] = state
        self._notify(state.name)
        return resource_version

    def _notify(self, name: str) -> None:
        for subscription in self._subscribers.get(name, ()):
            subscription._changed.set()


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[ClusterRef, str], PodWatcher]] = (
    weakref.WeakKeyDictionary()
)


def shared_watcher(client: ClusterClient, namespace: str) -> PodWatcher:
    """The running loop's watcher for (cluster, namespace), created on first use."""
    watchers = _watchers.setdefault(asyncio.get_running_loop(), {})
    key = (client.config.ref, namespace)
    watcher = watchers.get(key)
    if watcher is None or watcher.client is not client:
        watcher = watchers[key] = PodWatcher(client, namespace)
    return watcher


async def stop_shared_watchers() -> None:
    for watcher in _watchers.pop(asyncio.get_running_loop(), {}).values():
        await watcher.stop()


def watch_refused(exc: ApiError, namespace: str) -> KpoAsyncError:
    """The error for a list/watch the API server refuses, naming what to fix."""
    if not isinstance(exc, Forbidden):
        return exc  # a 401 or 404 (a missing namespace) says what to fix itself
    return PermissionDeniedError(
        f"watching pods in namespace {namespace} was forbidden (403) for the triggerer's identity. "
        "Fix: grant 'list' and 'watch' on pods in the Role (see docs/rbac.md)"
    )
