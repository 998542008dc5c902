"""Serving `?watch=true`: replay from a resourceVersion, live events, bookmarks, timeouts, faults."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from aiohttp import web

from kpo_async.testing.sim.config import SimConfig
from kpo_async.testing.sim.errors import ApiError, bad_request
from kpo_async.testing.sim.faults import FAULT_KEY
from kpo_async.testing.sim.httpio import stream_response
from kpo_async.testing.sim.selectors import FieldMatcher, LabelMatcher
from kpo_async.testing.sim.stats import Stats
from kpo_async.testing.sim.store import Gone, Obj, Store, WatchEvent, event_line
from kpo_async.testing.sim.table import table
from kpo_async.testing.sim.util import dumps


def gone_line(message: str) -> bytes:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Expired",
        "code": 410,
    }
    return b'{"type":"ERROR","object":' + dumps(status) + b"}\n"


def parse_rv(value: str | None) -> int | None:
    if value in (None, "", "0"):
        return None
    try:
        rv = int(value)  # type: ignore[arg-type]
    except ValueError as e:
        raise ApiError(
            400, f'resourceVersion: Invalid value: "{value}": must be a valid resource version', "BadRequest"
        ) from e
    if rv < 0:
        raise bad_request(f'resourceVersion: Invalid value: "{value}"')
    return rv


def _bookmark(resource_kind: str, api_version: str, rv: int, initial_end: bool = False) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"kind": resource_kind, "apiVersion": api_version, "metadata": meta}
    return b'{"type":"BOOKMARK","object":' + dumps(obj) + b"}\n"


def _table_line(type_: str, obj: Obj, include: str) -> bytes:
    body = obj.body if obj.body is not None else json.loads(obj.raw)
    t = table(obj.resource.name, [body], str(obj.rv), include)
    return b'{"type":"' + type_.encode() + b'","object":' + dumps(t) + b"}\n"


async def serve_watch(
    request: web.Request,
    store: Store,
    stats: Stats,
    config: SimConfig,
    resource: str,
    ns: str | None,
    label_match: LabelMatcher | None,
    field_match: FieldMatcher | None,
    as_table: bool = False,
) -> web.StreamResponse:
    q = request.query
    since = parse_rv(q.get("resourceVersion"))
    bookmarks = q.get("allowWatchBookmarks", "").lower() in ("true", "1")
    initial_events = q.get("sendInitialEvents", "").lower() in ("true", "1")
    timeout_s = q.get("timeoutSeconds")
    if timeout_s:
        try:
            timeout = float(timeout_s)
        except ValueError as e:
            raise bad_request(f"timeoutSeconds: Invalid value: {timeout_s}") from e
    else:
        lo, hi = config.default_watch_timeout
        timeout = random.uniform(lo, hi)
    fault = request.get(FAULT_KEY)
    if fault is not None and fault.watch_close_after is not None:
        timeout = min(timeout, fault.watch_close_after)
    include = q.get("includeObject", "Metadata")
    if since is not None and since > store.rv:
        await _wait_fresh(store, since)

    stats.gauge("open_watches", 1)
    try:
        resp, out = await stream_response(request, "application/json")
        if fault is not None and fault.watch_gone:
            rv = since if since is not None else store.rv
            await out.write(gone_line(f"too old resource version: {rv} ({store.rv})"))
            return resp
        try:
            watcher = store.watch(resource, ns, label_match, field_match, None if initial_events else since)
        except Gone as g:
            await out.write(gone_line(str(g)))
            return resp
        kind = watcher.resource.kind
        api_version = watcher.resource.api_version
        # sendInitialEvents: the synthetic ADDED events are queued; a bookmark marks their end
        pending_initial = watcher.queue.qsize() if initial_events else -1
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            next_bookmark = loop.time() + config.bookmark_interval
            while True:
                now = loop.time()
                if now >= deadline:
                    break
                items: list[Any] = []
                if watcher.queue.empty():
                    if pending_initial == 0:
                        await out.write(_bookmark(kind, api_version, store.rv, initial_end=True))
                        pending_initial = -1
                    if bookmarks and now >= next_bookmark:
                        await out.write(_bookmark(kind, api_version, store.rv))
                        next_bookmark = now + config.bookmark_interval
                    wait = deadline - now
                    if bookmarks:
                        wait = min(wait, max(0.0, next_bookmark - now))
                    try:
                        items.append(await asyncio.wait_for(watcher.queue.get(), wait))
                    except asyncio.TimeoutError:
                        continue
                size = 0
                while not watcher.queue.empty() and size < 256 * 1024:
                    items.append(watcher.queue.get_nowait())
                    size += 1024
                batch: list[bytes] = []
                overflow = False
                for item in items:
                    if item == "overflow":
                        overflow = True
                        break
                    if pending_initial > 0:
                        pending_initial -= 1
                    batch.append(_line(item, as_table, include))
                if batch:
                    await out.write(b"".join(batch))
                if overflow:
                    break
        except ConnectionResetError:  # client gone or an injected drop
            pass
        finally:
            watcher.close()
        return resp
    finally:
        stats.gauge("open_watches", -1)


async def _wait_fresh(store: Store, rv: int, timeout: float = 3.0) -> None:
    """A resourceVersion from the future (e.g. kept across a simulator restart): wait like the
    watch cache does, then answer its 504 "Too large resource version"."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while store.rv < rv:
        if loop.time() >= deadline:
            raise ApiError(
                504,
                f"Too large resource version: {rv}, current: {store.rv}",
                "Timeout",
                {
                    "causes": [
                        {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                    ],
                    "retryAfterSeconds": 1,
                },
            )
        await asyncio.sleep(0.05)


def _line(item: WatchEvent | tuple[str, Obj], as_table: bool, include: str) -> bytes:
    if isinstance(item, WatchEvent):
        if as_table:
            return _table_line(item.type, item.obj, include)
        return item.line()
    type_, obj = item
    if as_table:
        return _table_line(type_, obj, include)
    return event_line(type_, obj)
