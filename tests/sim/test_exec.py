"""pods/exec over WebSocket (v4.channel.k8s.io) through kubernetes_asyncio's WsApiClient."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from kpo_async.identity import XCOM_RETURN_FILE, XCOM_SIDECAR_NAME, XCOM_STOP_FILE

from .conftest import base_done_sidecar_running, cstatus, pod_manifest, run_exec, wait_for, wait_phase


async def test_xcom_read_and_sidecar_stop(v1: client.CoreV1Api, ws_v1: client.CoreV1Api) -> None:
    script = f"echo start; echo '{{\"answer\": 42}}' > {XCOM_RETURN_FILE}"
    await v1.create_namespaced_pod("default", pod_manifest("x1", script, sidecar=True))
    await wait_for(
        lambda: v1.read_namespaced_pod("x1", "default"),
        base_done_sidecar_running,  # the sidecar may start later
    )
    out, err, status = await run_exec(ws_v1, "x1", ["cat", XCOM_RETURN_FILE], XCOM_SIDECAR_NAME)
    assert json.loads(out) == {"answer": 42}
    assert err == b"" and status == {"metadata": {}, "status": "Success"}
    pod = await v1.read_namespaced_pod("x1", "default")
    assert pod.status.phase == "Running"  # the sidecar keeps the pod running
    out, err, status = await run_exec(ws_v1, "x1", ["touch", XCOM_STOP_FILE], XCOM_SIDECAR_NAME)
    assert status["status"] == "Success"
    pod = await wait_phase(v1, "x1", ("Succeeded",), timeout=5)
    sidecar = cstatus(pod, XCOM_SIDECAR_NAME)
    assert sidecar.state.terminated.exit_code == 0 and sidecar.state.terminated.reason == "Completed"


async def test_missing_xcom_file_status(v1: client.CoreV1Api, ws_v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("x2", "true", sidecar=True))
    await wait_phase(v1, "x2", ("Running",))
    out, err, status = await run_exec(ws_v1, "x2", ["cat", XCOM_RETURN_FILE], XCOM_SIDECAR_NAME)
    assert out == b""
    assert err == b"cat: can't open '/airflow/xcom/return.json': No such file or directory\n"
    assert status == {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: error executing command "
            "[cat /airflow/xcom/return.json], exit code 1"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "1"}]},
    }
    assert client.ApiClient  # keep the import used
    from kubernetes_asyncio.stream import WsApiClient

    assert WsApiClient.parse_error_data(json.dumps(status)) == 1


async def test_shell_exec_and_exit_code(v1: client.CoreV1Api, ws_v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("x3", "sleep 30"))
    await wait_phase(v1, "x3", ("Running",))
    out, err, status = await run_exec(
        ws_v1, "x3", ["sh", "-c", "echo $HOSTNAME; echo oops >&2; exit 3"], "base"
    )
    assert out == b"x3\n" and err == b"oops\n"
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"][0]["message"] == "3"
    # preload mode returns stdout+stderr
    text = await ws_v1.connect_get_namespaced_pod_exec(
        "x3", "default", command=["echo", "hello"], stdout=True, stderr=True, stdin=False, tty=False
    )
    assert text == "hello\n"


async def test_exec_unknown_binary(v1: client.CoreV1Api, ws_v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("x4", "sleep 30"))
    await wait_phase(v1, "x4", ("Running",))
    _, _, status = await run_exec(ws_v1, "x4", ["ruby", "-e", "1"], "base")
    assert status["reason"] == "InternalError" and status["code"] == 500
    assert 'exec: "ruby": executable file not found in $PATH' in status["message"]


async def handshake_error(ws_v1: client.CoreV1Api, pod: str, container: str | None) -> tuple[int, str]:
    kw: dict[str, Any] = {"container": container} if container else {}
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        ctx = await ws_v1.connect_get_namespaced_pod_exec(
            pod,
            "default",
            command=["true"],
            stdout=True,
            stderr=True,
            stdin=False,
            tty=False,
            _preload_content=False,
            **kw,
        )
        async with ctx:
            pass
    return e.value.status, e.value.message


async def test_exec_errors(v1: client.CoreV1Api, ws_v1: client.CoreV1Api, cluster) -> None:  # type: ignore[no-untyped-def]
    # a completed pod: the apiserver upgrades, then the node's refusal arrives on the error channel
    # (kubectl's "cannot exec into a container in a completed pod" is a client-side check)
    await v1.create_namespaced_pod("default", pod_manifest("x5", "echo done"))
    await wait_phase(v1, "x5", ("Succeeded",))
    out, err, status = await run_exec(ws_v1, "x5", ["true"], "base")
    assert (out, err) == (b"", b"")
    assert status == {
        "metadata": {},
        "status": "Failure",
        "message": 'Internal error occurred: unable to upgrade connection: container not found ("base")',
        "reason": "InternalError",
        "details": {"causes": [{"message": 'unable to upgrade connection: container not found ("base")'}]},
        "code": 500,
    }
    # errors the apiserver gives before any upgrade: 400 Status bodies
    await v1.create_namespaced_pod("default", pod_manifest("x6", "sleep 30", sidecar=True))
    await wait_phase(v1, "x6", ("Running",))
    assert (await handshake_error(ws_v1, "x6", "nope"))[0] == 400
    import ssl

    ctx = ssl.create_default_context(cafile=cluster.ca_path)
    headers = {
        "Authorization": f"Bearer {cluster.token}",
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    pods = f"{cluster.base_url}/api/v1/namespaces/default/pods"
    async with aiohttp.ClientSession() as s:
        url = f"{pods}/x6/exec?command=true&container=nope&stdout=true"
        async with s.get(url, headers=headers, ssl=ctx) as r:
            assert r.status == 400 and await r.json() == {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "container nope is not valid for pod x6",
                "reason": "BadRequest",
                "code": 400,
            }
        url = f"{pods}/x6/exec?command=true&stdout=true"
        async with s.get(url, headers=headers, ssl=ctx) as r:
            assert (await r.json())["message"] == (
                "a container name must be specified for pod x6, choose one of: [base airflow-xcom-sidecar]"
            )


async def test_kill_main_process_from_exec(v1: client.CoreV1Api, ws_v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod(
        "default", pod_manifest("k1", "trap 'echo got INT; exit 0' INT; while true; do sleep 0.1; done")
    )
    await wait_phase(v1, "k1", ("Running",))
    _, _, status = await run_exec(ws_v1, "k1", ["kill", "-2", "1"], "base")
    assert status["status"] == "Success"
    pod = await wait_phase(v1, "k1", ("Succeeded",), timeout=5)
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    log = await v1.read_namespaced_pod_log("k1", "default")
    assert log == "got INT\n"
    await v1.create_namespaced_pod("default", pod_manifest("k2", "sleep 30"))
    await wait_phase(v1, "k2", ("Running",))
    await run_exec(ws_v1, "k2", ["kill", "-s", "TERM", "1"], "base")
    pod = await wait_phase(v1, "k2", ("Failed",), timeout=5)
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 143 and term.reason == "Error"


async def test_exec_stdin(v1: client.CoreV1Api, ws_v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("si", "sleep 30"))
    await wait_phase(v1, "si", ("Running",))
    ctx = await ws_v1.connect_get_namespaced_pod_exec(
        "si",
        "default",
        command=["sh", "-c", "read x; echo got $x"],
        stdout=True,
        stderr=True,
        stdin=True,
        tty=False,
        _preload_content=False,
    )
    out = b""
    async with ctx as ws:
        await ws.send_bytes(b"\x00hello\n")
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY and msg.data[0] == 1:
                out += msg.data[1:]
    assert out == b"got hello\n"
