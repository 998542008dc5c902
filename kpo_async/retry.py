"""The retry policy of every Kubernetes API call: bounded attempts, exponential backoff, full jitter."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from kpo_async.errors import ApiError, ClusterUnreachableError, Retryable

T = TypeVar("T")

#: Status codes worth retrying: throttling and server-side trouble. Every other 4xx is final.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


#: Exponential backoff with full jitter: retry n sleeps uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**n)),
#: for at most ATTEMPTS attempts and DEADLINE_SECONDS, whichever ends first.
BACKOFF_BASE = 0.2
BACKOFF_CAP = 10.0
ATTEMPTS = 8
DEADLINE_SECONDS = 120.0


def is_retryable(exc: BaseException) -> bool:
    """Throttling, server-side trouble and dropped connections; every other failure is final."""
    return isinstance(exc, (Retryable, aiohttp.ClientError, asyncio.TimeoutError, ConnectionError))


def backoff_delay(exc: BaseException | None, attempt: int) -> float:
    """The jittered delay before retry `attempt`, never shorter than the server's Retry-After (in
    seconds, on a 429/503)."""
    delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt)))
    headers = getattr(exc, "headers", None)
    try:
        return max(delay, min(float(headers["Retry-After"]), BACKOFF_CAP))  # type: ignore[index]
    except (TypeError, KeyError, ValueError):  # no headers, no Retry-After, or an HTTP date
        return delay


async def with_retries(call: Callable[[], Awaitable[T]], *, what: str, attempts: int = ATTEMPTS) -> T:
    """Run `call` until it succeeds, retrying only transient failures.

    Raises the original exception for non-retryable errors (404, 409, 403, 422 ...), and
    `ClusterUnreachableError` naming `what` once attempts or the deadline run out.
    """
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            attempt += 1
            elapsed = time.monotonic() - started
            if attempt >= attempts or elapsed >= DEADLINE_SECONDS:
                raise ClusterUnreachableError(
                    f"{what} failed after {attempt} attempts over {elapsed:.1f}s: {describe(exc)}. "
                    "Check that the API server is reachable from this host and not overloaded."
                ) from exc
            await asyncio.sleep(backoff_delay(exc, attempt))


def describe(exc: BaseException) -> str:
    """A one-line description of an API failure, without response bodies that could hold secrets."""
    if isinstance(exc, ApiError):
        return f"HTTP {exc.status}{': ' + exc.message[:200] if exc.message else ''}"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
