"""The XCom sidecar: read ``/airflow/xcom/return.json`` and tell the sidecar to exit."""

from __future__ import annotations

import json
from typing import Any

from kpo_async.clients import ClusterClient
from kpo_async.errors import XComError
from kpo_async.identity import XCOM_RETURN_FILE, XCOM_SIDECAR_NAME, XCOM_STOP_FILE
from kpo_async.pod_exec import exec_in_container
from kpo_async.retry import with_retries

_SNIPPET = 120


async def read_xcom(client: ClusterClient, namespace: str, pod: str) -> Any:
    """The JSON value the base container wrote, or `XComError` saying what is wrong and the fix."""
    result = await with_retries(
        lambda: exec_in_container(client, namespace, pod, XCOM_SIDECAR_NAME, ["cat", XCOM_RETURN_FILE]),
        what=f"reading the XCom result of {namespace}/{pod}",
    )
    if result.exit_code != 0:
        reason = result.stderr.decode("utf-8", "replace").strip() or f"exit code {result.exit_code}"
        raise XComError(
            f"do_xcom_push=True but the pod did not leave a readable {XCOM_RETURN_FILE} ({reason}). "
            f"Fix: have the container write its JSON result to {XCOM_RETURN_FILE}, or set do_xcom_push=False."
        )
    return parse_xcom(result.stdout)


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
        lambda: exec_in_container(client, namespace, pod, XCOM_SIDECAR_NAME, ["touch", XCOM_STOP_FILE]),
        what=f"stopping the XCom sidecar of {namespace}/{pod}",
    )
