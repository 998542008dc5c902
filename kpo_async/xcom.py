"""The XCom sidecar: read ``/airflow/xcom/return.json``, record it, and tell the sidecar to exit.

Both are commands run in the sidecar over the API server's WebSocket exec (``v4.channel.k8s.io``),
on the shared client's API pool (`ClusterClient.ws_connect`): no new SSL context.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from kpo_async.api import error_for
from kpo_async.clients import ClusterClient
from kpo_async.errors import XComError
from kpo_async.identity import XCOM_RESULT_ANNOTATION, XCOM_RETURN_FILE, XCOM_SIDECAR_NAME, XCOM_STOP_FILE
from kpo_async.pod_state import ContainerState, PodState
from kpo_async.pods import patch_metadata
from kpo_async.retry import describe, with_retries

_SNIPPET = 120
#: XCom values up to this size are recorded on the pod before the sidecar is stopped.
ANNOTATION_LIMIT = 64 * 1024
#: How long the XCom sidecar may take to start after the base container finished.
SIDECAR_START_SECONDS = 120.0
#: Output kept from one exec; more is an error rather than unbounded memory.
MAX_OUTPUT = 32 * 1024 * 1024
#: How long the sidecar's command may stay silent before the exec is given up.
RECEIVE_TIMEOUT_SECONDS = 60.0
STDOUT, STDERR, ERROR = 1, 2, 3


#: What the sidecar prints when the container left no result (no file, or an empty one).
NO_RESULT = "__kpo_async_no_xcom_result__"
_READ_SCRIPT = f"if [ -s {XCOM_RETURN_FILE} ]; then cat {XCOM_RETURN_FILE}; else echo {NO_RESULT}; fi"


async def exec_in_sidecar(
    client: ClusterClient, namespace: str, pod: str, command: list[str]
) -> tuple[bytes, str | None]:
    """Run `command` in the XCom sidecar: its stdout, and why it exited with a non-zero code (its
    stderr, else the API server's message naming the code), None when it did not.
    `XComError` if it could not run at all."""
    query = [("command", part) for part in command]
    query += [("container", XCOM_SIDECAR_NAME), ("stdout", "true"), ("stderr", "true")]
    what = f"exec {' '.join(command)!r} in {namespace}/{pod} container {XCOM_SIDECAR_NAME}"
    try:
        socket = await client.ws_connect(
            f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/exec",
            params=query,
            protocols=("v4.channel.k8s.io",),
            timeout=aiohttp.ClientWSTimeout(ws_receive=RECEIVE_TIMEOUT_SECONDS, ws_close=5),
            max_msg_size=0,
        )
    except aiohttp.WSServerHandshakeError as exc:
        # The API server authorizes a WebSocket exec as 'create' (some versions as 'get').
        raise error_for(
            exc.status, exc.message, what=what, verb="create", resource="pods/exec", headers=exc.headers
        ) from None
    stdout, stderr = bytearray(), bytearray()
    status: dict[str, Any] = {"status": "Success"}  # no status on the error channel: success
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
                raise XComError(f"{what} produced more than {MAX_OUTPUT} bytes of output")
    if status.get("status") == "Success":
        return bytes(stdout), None
    if status.get("reason") != "NonZeroExitCode":
        raise XComError(f"{what} failed: {status.get('message') or status}")
    # Without stderr, the Status's message says the command and its exit code.
    return bytes(stdout), stderr.decode("utf-8", "replace").strip() or str(status.get("message"))


async def read_xcom(client: ClusterClient, namespace: str, pod: str, logger: Any = None) -> Any:
    """The JSON value the base container wrote; None (with a warning) when it wrote none or an
    empty file, as the official operator; `XComError` saying what is wrong and the fix otherwise."""
    stdout, failure = await with_retries(
        lambda: exec_in_sidecar(client, namespace, pod, ["sh", "-c", _READ_SCRIPT]),
        what=f"reading the XCom result of {namespace}/{pod}",
    )
    if failure is not None:
        raise XComError(
            f"do_xcom_push=True but the pod did not leave a readable {XCOM_RETURN_FILE} ({failure}). "
            f"Fix: have the container write its JSON result to {XCOM_RETURN_FILE}, or set do_xcom_push=False."
        )
    if stdout.strip() == NO_RESULT.encode():
        if logger is not None:
            logger.warning("do_xcom_push=True but %s is missing or empty: the XCom is None", XCOM_RETURN_FILE)
        return None
    return parse_xcom(stdout)


def parse_xcom(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    if not text.strip():
        raise XComError(
            f"do_xcom_push=True but {XCOM_RETURN_FILE} is empty. Fix: write a JSON value to it "
            '(for example {"rows": 3}), or set do_xcom_push=False.'
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        snippet = text.strip()[:_SNIPPET] + ("..." if len(text.strip()) > _SNIPPET else "")
        raise XComError(
            f"{XCOM_RETURN_FILE} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
            f"{snippet!r}. Fix: write JSON (json.dump in Python, or a quoted string in shell)."
        ) from None


async def stop_sidecar(client: ClusterClient, namespace: str, pod: str) -> None:
    """Ask the sidecar to exit so the pod can reach Succeeded/Failed."""
    await with_retries(
        lambda: exec_in_sidecar(client, namespace, pod, ["touch", XCOM_STOP_FILE]),
        what=f"stopping the XCom sidecar of {namespace}/{pod}",
    )


@dataclass
class XComCollector:
    """Collect the XCom result of a pod whose base container succeeded, exactly once.

    The value is recorded on the pod (if small) before the sidecar is stopped, so that a trigger
    re-created after that moment still has it.
    """

    client: ClusterClient
    namespace: str
    pod_name: str
    #: The pod's state after its next change or at the deadline; None once it is gone.
    next_state: Callable[[float | None], Awaitable[PodState | None]]
    log: Any = None

    @property
    def _pod_ref(self) -> str:
        return f"{self.namespace}/{self.pod_name}"

    async def collect(self, state: PodState) -> Any:
        if (recorded := state.annotations.get(XCOM_RESULT_ANNOTATION)) is not None:
            return json.loads(recorded)  # read by an earlier incarnation of this trigger
        await self._wait_for_sidecar(state)
        value = await read_xcom(self.client, self.namespace, self.pod_name, self.log)
        encoded = json.dumps(value)
        if len(encoded) <= ANNOTATION_LIMIT:
            await patch_metadata(
                self.client,
                self.namespace,
                self.pod_name,
                what="recording the XCom result on",
                annotations={XCOM_RESULT_ANNOTATION: encoded},
            )
        await stop_sidecar(self.client, self.namespace, self.pod_name)
        return value

    async def collect_after_failure(self, state: PodState) -> Any:
        """The official operator pushes a failed pod's XCom too: read it unless the sidecar ended."""
        sidecar = state.container(XCOM_SIDECAR_NAME)
        if sidecar is not None and not sidecar.terminated:
            try:
                return await self.collect(state)
            except Exception as exc:
                self.log.warning("could not read the XCom of failed pod %s: %s", self._pod_ref, describe(exc))
        await self.stop_sidecar_quietly(state)
        return None

    async def stop_sidecar_quietly(self, state: PodState) -> None:
        """Let the pod end without its result: the operator cleans the pod up anyway."""
        if state.finished:
            return
        try:
            await stop_sidecar(self.client, self.namespace, self.pod_name)
        except Exception as exc:
            self.log.warning("could not stop the XCom sidecar of %s: %s", self._pod_ref, describe(exc))

    async def _wait_for_sidecar(self, state: PodState | None) -> None:
        """A base container can finish before the sidecar has even started: wait for it to run."""
        deadline = time.time() + SIDECAR_START_SECONDS
        while True:
            sidecar = state.container(XCOM_SIDECAR_NAME) if state is not None else None
            if sidecar is not None and sidecar.state == "running":
                return
            # Statuses list every container of the spec once scheduled: none means no sidecar at all.
            ended = state is None or (sidecar.terminated if sidecar is not None else bool(state.containers))
            if ended or time.time() >= deadline:
                raise XComError(self._problem(state, sidecar))
            state = await self.next_state(deadline)

    def _problem(self, state: PodState | None, sidecar: ContainerState | None) -> str:
        """Why the XCom cannot be read, blaming the user only when the pod spec is at fault."""
        what = f"cannot read the XCom result of {self._pod_ref}: the {XCOM_SIDECAR_NAME} container"
        if state is None:
            return f"{what} is gone with its pod (deleted before the result was read)"
        if state.reason or state.message:  # e.g. Evicted: the node took the pod away
            return f"{what} stopped because the pod was {state.reason}: {state.message or ''}".rstrip(": ")
        if sidecar is None:
            return (
                f"{what} is missing from the pod. Fix: keep the sidecar do_xcom_push adds "
                "(a pod_template_file or full_pod_spec must not replace the containers list)"
            )
        return f"{what} is {sidecar.state} ({sidecar.reason or 'no reason given'}) and cannot be read"
