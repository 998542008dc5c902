"""The Airflow names the runtime uses, from wherever the running Airflow 3.x keeps them.

Airflow 3.0 keeps the exceptions and ``BaseHook`` in core modules and has no ``redact`` or
``amask_secret`` in ``airflow.sdk.log``; later 3.x releases moved them into the Task SDK. Every
runtime module imports these names from here, so the version difference lives in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:  # Airflow >= 3.1
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowNotFoundException,
        AirflowSkipException,
        AirflowTaskTimeout,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.0
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowException,
        AirflowNotFoundException,
        AirflowSkipException,
        AirflowTaskTimeout,
        TaskDeferred,
    )

try:
    from airflow.sdk.bases.hook import BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]

__all__ = [
    "AirflowException",
    "AirflowNotFoundException",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "BaseHook",
    "TaskDeferred",
    "aget_connection",
    "amask_secret",
    "redact",
]


def _secrets_masker() -> tuple[Callable[..., Any], Callable[..., Any]]:
    try:
        from airflow.sdk.log import mask_secret, redact
    except ImportError:  # Airflow 3.0: the masker lives in the execution-time package
        from airflow.sdk.execution_time.secrets_masker import mask_secret, redact
    return mask_secret, redact


def redact(value: Any, name: str | None = None) -> Any:
    """The value with every registered secret replaced (Airflow's own masker)."""
    return _secrets_masker()[1](value, name)


async def amask_secret(secret: str) -> None:
    """Register `secret` with this process's masker without blocking the event loop."""
    try:
        from airflow.sdk.log import amask_secret as mask_async
    except ImportError:  # Airflow 3.0: registration is local and synchronous there
        _secrets_masker()[0](secret)
        return
    await mask_async(secret)


async def aget_connection(conn_id: str) -> Any:
    """The connection `conn_id`, read without blocking the event loop."""
    reader = getattr(BaseHook, "aget_connection", None)
    if reader is not None:
        return await reader(conn_id)
    import asyncio

    # Airflow 3.0 has only the synchronous lookup: run it off the loop.
    return await asyncio.to_thread(BaseHook.get_connection, conn_id)
