"""An interactive `sh` over exec (stdin kept open) runs each command as it arrives; pgrep and id."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from .conftest import cstatus, pod_manifest, wait_for

SIDECAR = "sidecar"


def _pod(name: str) -> dict[str, Any]:
    pod = pod_manifest(name, "sleep 30")
    pod["spec"]["containers"].append(
        {
            "name": SIDECAR,
            "image": "alpine:3.20",
            "command": ["sh", "-c", 'trap "exit 0" INT; while true; do sleep 1; done;'],
        }
    )
    return pod


class Session:
    """A raw v4.channel.k8s.io exec session with stdin open."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.out = b""
        self.err = b""
        self.status: dict[str, Any] | None = None

    async def send(self, text: str) -> None:
        await self.ws.send_bytes(b"\x00" + text.encode())

    async def read_until(self, predicate: Any, timeout: float = 5.0) -> None:
        async def pump() -> None:
            while not predicate(self):
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    return
                ch, data = msg.data[0], msg.data[1:]
                if ch == 1:
                    self.out += data
                elif ch == 2:
                    self.err += data
                elif ch == 3 and data:
                    self.status = json.loads(data)

        await asyncio.wait_for(pump(), timeout)


async def _open(cluster: Any, session: aiohttp.ClientSession, pod: str) -> Session:
    params = [
        ("command", "/bin/sh"),
        ("container", SIDECAR),
        ("stdin", "true"),
        ("stdout", "true"),
        ("stderr", "true"),
    ]
    ws = await session.ws_connect(
        cluster.base_url + f"/api/v1/namespaces/default/pods/{pod}/exec",
        params=params,
        headers={"Authorization": f"Bearer {cluster.token}"},
        protocols=("v4.channel.k8s.io",),
        ssl=ssl.create_default_context(cafile=cluster.ca_path) if cluster.ca_path else False,
    )
    return Session(ws)


async def _running(v1: client.CoreV1Api, name: str) -> None:
    await wait_for(
        lambda: v1.read_namespaced_pod(name, "default"),
        lambda p: (
            bool(p.status.container_statuses) and all(s.state.running for s in p.status.container_statuses)
        ),
    )


async def test_each_command_runs_as_it_arrives(cluster: Any, v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", _pod("i1"))
    await _running(v1, "i1")
    async with aiohttp.ClientSession() as http:
        s = await _open(cluster, http, "i1")
        await s.send("echo first\n")
        await s.read_until(lambda s: s.out == b"first\n")  # answered while stdin stays open
        await s.send("if true; then\n")
        await asyncio.sleep(0.1)
        assert s.out == b"first\n"  # an unfinished compound command waits for its end
        await s.send("echo $(id -u) $(id -un); fi\n")
        await s.read_until(lambda s: s.out == b"first\n0 root\n")
        await s.send("pgrep -f 'while true'; pgrep -u 0 sh | wc -l; pgrep nothing-like-this; echo $?\n")
        await s.read_until(lambda s: s.out.count(b"\n") >= 5)
        assert s.out == b"first\n0 root\n1\n2\n1\n"  # pid 1, then pid 1 and this shell; no match: 1
        await s.send("exit 3\n")
        await s.read_until(lambda s: s.status is not None)
        assert s.status is not None and s.status["details"]["causes"][0]["message"] == "3"
        await s.ws.close()


async def test_official_sidecar_kill_ends_the_sidecar_and_the_session(
    cluster: Any, v1: client.CoreV1Api
) -> None:
    await v1.create_namespaced_pod("default", _pod("i2"))
    await _running(v1, "i2")
    async with aiohttp.ClientSession() as http:
        s = await _open(cluster, http, "i2")
        await s.send("kill -2 $(pgrep -u $(id -u) -f 'sh')\n")
        await s.read_until(lambda s: s.status is not None)  # the shell itself got SIGINT too
        assert s.err == b"" and s.status is not None and s.status["status"] == "Failure"
        await s.ws.close()
    pod = await wait_for(
        lambda: v1.read_namespaced_pod("i2", "default"),
        lambda p: cstatus(p, SIDECAR).state.terminated is not None,
    )
    assert cstatus(pod, SIDECAR).state.terminated.exit_code == 0  # its INT trap ran `exit 0`


async def test_stdin_sent_as_text_frames_is_read(cluster: Any, v1: client.CoreV1Api) -> None:
    """The sync `kubernetes` client writes a str to stdin as a text frame; kube-apiserver reads it."""
    await v1.create_namespaced_pod("default", _pod("i3"))
    await _running(v1, "i3")
    async with aiohttp.ClientSession() as http:
        s = await _open(cluster, http, "i3")
        await s.ws.send_str("\x00echo from-text\n")
        await s.read_until(lambda s: s.out == b"from-text\n")
        await s.ws.close()
