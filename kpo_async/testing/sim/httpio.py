"""Response helpers: JSON/Status answers and stream writes that honour `drop_after_bytes`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kpo_async.testing.sim.errors import ApiError
from kpo_async.testing.sim.faults import FAULT_KEY
from kpo_async.testing.sim.util import dumps


class ConnectionDropped(ConnectionResetError):
    """Raised after a fault closed the connection mid-response."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    data = body if isinstance(body, bytes) else dumps(body)
    return web.Response(body=data, status=status, content_type="application/json", headers=headers)


def error_response(err: ApiError) -> web.Response:
    return json_response(err.body(), err.code, err.headers or None)


def drop_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


class Output:
    """Writes to a prepared StreamResponse; closes the connection after a fault's byte budget."""

    def __init__(self, request: web.Request, resp: web.StreamResponse) -> None:
        self.request = request
        self.resp = resp
        fault = request.get(FAULT_KEY)
        self.limit: int | None = fault.drop_after_bytes if fault is not None else None
        self.sent = 0

    async def write(self, data: bytes) -> None:
        if self.limit is not None and self.sent + len(data) >= self.limit:
            part = data[: max(0, self.limit - self.sent)]
            if part:
                await self.resp.write(part)
            self.sent = self.limit
            drop_connection(self.request)
            raise ConnectionDropped("connection dropped by an injected fault")
        self.sent += len(data)
        await self.resp.write(data)


async def stream_response(
    request: web.Request, content_type: str, status: int = 200, headers: dict[str, str] | None = None
) -> tuple[web.StreamResponse, Output]:
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_type = content_type
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    return resp, Output(request, resp)
