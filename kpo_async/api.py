"""The one way runtime code talks to the Kubernetes API: typed errors, retries, JSON bodies.

Requests are made with ``_preload_content=False`` (we skip the generated models' parsing for
speed), so kubernetes-asyncio does not check the status: `open_response` does, and turns an error
answer into the `kpo_async.errors.ApiError` subclass callers react to (`NotFound`, `Conflict`,
`Forbidden` naming the missing verb, `Gone`, `Unprocessable`, `Unauthorized`, `Refused`,
`Retryable`). `call` adds the retry policy of `kpo_async.retry` and reads the JSON body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

from kpo_async import errors
from kpo_async.retry import ATTEMPTS, RETRYABLE_STATUS, with_retries

_BY_STATUS: dict[int, type[errors.ApiError]] = {
    401: errors.Unauthorized,
    404: errors.NotFound,
    409: errors.Conflict,
    410: errors.Gone,
    422: errors.Unprocessable,
}


def error_for(
    status: int, body: bytes | str | None, *, what: str, verb: str, resource: str, headers: Any = None
) -> errors.ApiError:
    """The typed error for an error answer, carrying the API server's own explanation: the
    `message` of the Status object it answered with."""
    try:
        message = str(json.loads(body or b"").get("message") or "")
    except (TypeError, ValueError, AttributeError):
        message = ""
    if status == 403:
        if "cannot " in message or not message:  # RBAC says "User x cannot <verb> resource ..."
            return errors.Forbidden(what, verb, resource, message)
        refusal = errors.QuotaExceeded if "exceeded quota" in message else errors.Refused  # or PodSecurity
        return refusal(what, status, message, headers)
    kind = errors.Retryable if status in RETRYABLE_STATUS else _BY_STATUS.get(status, errors.ApiError)
    return kind(what, status, message, headers)


async def open_response(request: Awaitable[Any], *, what: str, verb: str, resource: str = "pods") -> Any:
    """Await a ``_preload_content=False`` request; its response if 2xx, else the typed error.

    The caller reads (or streams) the body and releases the response.
    """
    response = await request
    if 200 <= response.status <= 299:
        return response
    async with response:  # released on the way out
        body = await response.read()
    raise error_for(response.status, body, what=what, verb=verb, resource=resource, headers=response.headers)


async def call(
    request: Callable[[], Awaitable[Any]],
    *,
    what: str,
    verb: str,
    resource: str = "pods",
    attempts: int = ATTEMPTS,
) -> dict[str, Any]:
    """Make the request (again on transient failures, per `kpo_async.retry`); its JSON body.

    The body is read inside the retried call: a connection that drops while the body is read is
    retried like one that drops before the answer.
    """

    async def once() -> dict[str, Any]:
        async with await open_response(request(), what=what, verb=verb, resource=resource) as response:
            return cast(dict[str, Any], json.loads(await response.read()))

    return await with_retries(once, what=what, attempts=attempts)
