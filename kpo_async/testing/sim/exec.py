"""pods/exec over WebSocket (v4.channel.k8s.io and v5.channel.k8s.io framing)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import WSMsgType, web

from kpo_async.testing.sim.errors import ApiError, bad_request
from kpo_async.testing.sim.kubelet import Kubelet
from kpo_async.testing.sim.shell import BytesSource, QueueSource, is_runnable
from kpo_async.testing.sim.shell.io import Sink
from kpo_async.testing.sim.stats import Stats
from kpo_async.testing.sim.util import dumps, rand_hex

PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(argv: list[str], code: int) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: "
            f"error executing command [{' '.join(argv)}], exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def not_found_status(argv0: str) -> dict[str, Any]:
    detail = (
        "error executing command in container: failed to exec in container: failed to start exec "
        f'"{rand_hex(64)}": OCI runtime exec failed: exec failed: unable to start container process: '
        f'exec: "{argv0}": executable file not found in $PATH: unknown'
    )
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {detail}",
        "reason": "InternalError",
        "details": {"causes": [{"message": detail}]},
        "code": 500,
    }


def resolve_exec_container(pod: dict[str, Any], container: str) -> str:
    """The apiserver's container choice for exec, with its 400 messages."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec", {})
    containers = [c["name"] for c in spec.get("containers") or []]
    inits = [c["name"] for c in spec.get("initContainers") or []]
    if not container:
        if len(containers) == 1:
            return containers[0]
        msg = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
        if inits:
            msg += f" or one of the init containers: [{' '.join(inits)}]"
        raise bad_request(msg)
    if container not in containers and container not in inits:
        raise bad_request(f"container {container} is not valid for pod {name}")
    return container


class _ChannelSink(Sink):
    def __init__(self, queue: asyncio.Queue[tuple[int, bytes] | None], channel: int) -> None:
        self.queue = queue
        self.channel = channel

    def write(self, data: bytes) -> None:
        if data:
            self.queue.put_nowait((self.channel, data))


async def serve_exec(
    request: web.Request, kubelet: Kubelet, stats: Stats, pod: dict[str, Any]
) -> web.StreamResponse:
    q = request.query
    argv = q.getall("command", [])
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    container = resolve_exec_container(pod, q.get("container", ""))
    want_stdin, tty = _truthy(q.get("stdin")), _truthy(q.get("tty"))
    want_stdout = _truthy(q.get("stdout", "true"))
    want_stderr = _truthy(q.get("stderr", "true")) and not tty
    if not (want_stdin or want_stdout or want_stderr):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    if not argv:
        raise bad_request("you must specify at least one command for the container")
    if not pod.get("spec", {}).get("nodeName"):
        raise bad_request(f"pod {name} does not have a host assigned")
    runtime_or_refusal = kubelet.runtime_for_exec(ns, name, container)
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise ApiError(400, "Upgrade request required", "BadRequest")

    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0, autoping=True)
    await ws.prepare(request)
    v5 = ws.ws_protocol == "v5.channel.k8s.io"
    stats.gauge("open_exec_sessions", 1)
    outq: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
    stdin = QueueSource() if want_stdin else BytesSource(b"")
    stdout: Sink = _ChannelSink(outq, STDOUT)
    stderr: Sink = stdout if tty else _ChannelSink(outq, STDERR)
    refusal = runtime_or_refusal if isinstance(runtime_or_refusal, dict) else None
    host = None if isinstance(runtime_or_refusal, dict) else runtime_or_refusal.exec_host()
    exec_task: asyncio.Task[int] | None = None

    async def sender() -> None:
        while True:
            item = await outq.get()
            if item is None:
                return
            ch, data = item
            await ws.send_bytes(bytes([ch]) + data)

    async def reader() -> None:
        async for msg in ws:
            # kube-apiserver reads text frames like binary ones; the sync client sends str as text
            if msg.type == WSMsgType.TEXT:
                data = msg.data.encode()
            elif msg.type == WSMsgType.BINARY:
                data = msg.data
            else:
                continue
            if not data:
                continue
            ch, payload = data[0], data[1:]
            if ch == STDIN and isinstance(stdin, QueueSource):
                if payload:
                    stdin.queue.put_nowait(bytes(payload))
            elif ch == CLOSE and v5 and isinstance(stdin, QueueSource):
                if payload[:1] == bytes([STDIN]):
                    stdin.queue.put_nowait(None)
        # the client went away: its process goes too
        if exec_task is not None and not exec_task.done():
            exec_task.cancel()

    send_task = asyncio.ensure_future(sender())
    read_task = asyncio.ensure_future(reader())
    try:
        for ch, on in ((STDOUT, want_stdout), (STDERR, want_stderr), (ERROR, True)):
            if on:
                await ws.send_bytes(bytes([ch]))
        if refusal is not None:
            status = refusal
        elif not is_runnable(argv) or host is None:
            status = not_found_status(argv[0])
        else:
            exec_task = asyncio.ensure_future(host.run(argv, stdin, stdout, stderr))
            try:
                code = await exec_task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if (current is not None and current.cancelling()) or read_task.done():
                    raise  # the handler is cancelled or the client disconnected
                code = 137  # the container stopped under the exec'd process
            status = success_status() if code == 0 else exit_status(argv, code)
        outq.put_nowait(None)
        await send_task
        await ws.send_bytes(bytes([ERROR]) + dumps(status))
        await ws.close()
    except (ConnectionResetError, RuntimeError):
        pass
    except asyncio.CancelledError:
        if read_task.done():
            return ws
        raise
    finally:
        stats.gauge("open_exec_sessions", -1)
        if exec_task is not None and not exec_task.done():
            exec_task.cancel()
        send_task.cancel()
        read_task.cancel()
        with contextlib.suppress(BaseException):
            await read_task
    return ws
