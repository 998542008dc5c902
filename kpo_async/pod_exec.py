"""Run a command in a container over the API server's WebSocket exec (``v4.channel.k8s.io``).

Uses the shared client's aiohttp session, so exec costs no new SSL context and reuses its pool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from kpo_async.api import error_for
from kpo_async.clients import ClusterClient
from kpo_async.errors import KpoAsyncError

STDOUT, STDERR, ERROR = 1, 2, 3
#: Output kept from one exec; more is an error rather than unbounded memory.
MAX_OUTPUT = 32 * 1024 * 1024
#: How long the command may stay silent before the exec is given up.
RECEIVE_TIMEOUT_SECONDS = 60.0


class ExecError(KpoAsyncError):
    """The command could not be run in the container (not a non-zero exit: see `ExecResult`)."""


@dataclass(frozen=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


async def exec_in_container(
    client: ClusterClient, namespace: str, pod: str, container: str, command: list[str]
) -> ExecResult:
    query = urlencode(
        [("command", part) for part in command]
        + [("container", container), ("stdout", "true"), ("stderr", "true")]
    )
    # aiohttp upgrades an http(s) URL to a WebSocket itself (a ws(s) URL is the same request).
    url = f"{client.host}/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/exec?{query}"
    what = f"exec {' '.join(command)!r} in {namespace}/{pod} container {container}"
    try:
        socket = await client.session.ws_connect(
            url,
            protocols=("v4.channel.k8s.io",),
            headers=await client.auth_headers(),
            timeout=aiohttp.ClientWSTimeout(ws_receive=RECEIVE_TIMEOUT_SECONDS, ws_close=5),
            max_msg_size=0,
        )
    except aiohttp.WSServerHandshakeError as exc:
        # The API server authorizes a WebSocket exec as 'create' (some versions as 'get').
        raise error_for(
            exc.status, exc.message, what=what, verb="create", resource="pods/exec", headers=exc.headers
        ) from None
    stdout, stderr = bytearray(), bytearray()
    status: dict[str, Any] | None = None
    async with socket:
        async for message in socket:
            if message.type != aiohttp.WSMsgType.BINARY or not message.data:
                continue
            channel, payload = message.data[0], message.data[1:]
            if channel == STDOUT:
                stdout += payload
            elif channel == STDERR:
                stderr += payload[: max(0, 65536 - len(stderr))]
            elif channel == ERROR and payload:
                status = json.loads(payload)
            if len(stdout) > MAX_OUTPUT:
                raise ExecError(f"{what} produced more than {MAX_OUTPUT} bytes of output")
    return ExecResult(bytes(stdout), bytes(stderr), _exit_code(status, what))


def _exit_code(status: dict[str, Any] | None, what: str) -> int:
    if status is None or status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                return int(cause.get("message", 1))
        return 1
    raise ExecError(f"{what} failed: {status.get('message') or status}")
