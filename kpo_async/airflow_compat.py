"""The Airflow names the runtime uses, from wherever the running Airflow 3.x keeps them.

Airflow 3.0 keeps the exceptions and ``BaseHook`` in core modules and has no ``redact`` or
``amask_secret`` in ``airflow.sdk.log``; later 3.x releases moved them into the Task SDK. Every
runtime module imports these names from here, so the version difference lives in one place.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

# Each name is imported `as` itself: re-exported (the functions below are this module's own).
try:  # Airflow >= 3.1
    from airflow.sdk.exceptions import AirflowException as AirflowException
    from airflow.sdk.exceptions import AirflowFailException as AirflowFailException
    from airflow.sdk.exceptions import AirflowNotFoundException as AirflowNotFoundException
    from airflow.sdk.exceptions import AirflowSkipException as AirflowSkipException
    from airflow.sdk.exceptions import AirflowTaskTimeout as AirflowTaskTimeout
    from airflow.sdk.exceptions import TaskDeferred as TaskDeferred
except ImportError:  # Airflow 3.0 (type-checked against the newest layout)
    if not TYPE_CHECKING:
        from airflow.exceptions import AirflowException as AirflowException
        from airflow.exceptions import AirflowFailException as AirflowFailException
        from airflow.exceptions import AirflowNotFoundException as AirflowNotFoundException
        from airflow.exceptions import AirflowSkipException as AirflowSkipException
        from airflow.exceptions import AirflowTaskTimeout as AirflowTaskTimeout
        from airflow.exceptions import TaskDeferred as TaskDeferred
try:
    from airflow.sdk.bases.hook import BaseHook as BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook as BaseHook  # type: ignore[attr-defined,no-redef]


@functools.cache  # redact runs once per log line of a task with secrets
def _masker(name: str) -> Any:
    """`name` from Airflow's secrets masker: ``airflow.sdk.log`` (3.1+) or its 3.0 home."""
    modules = map(importlib.import_module, ("airflow.sdk.log", "airflow.sdk.execution_time.secrets_masker"))
    return next(filter(None, (getattr(module, name, None) for module in modules)), None)  # imported lazily


def redact(value: Any, name: str | None = None) -> Any:
    """The value with every registered secret replaced (Airflow's own masker)."""
    return _masker("redact")(value, name)


async def amask_secret(secret: str) -> None:
    """Register `secret` with this process's masker without blocking the event loop."""
    # Airflow 3.0 has only the synchronous one, and it tells the supervisor (see below).
    await (_masker("amask_secret") or sync_to_async(_masker("mask_secret")))(secret)


async def aget_connection_extras(conn_id: str) -> dict[str, Any]:
    """The extras of connection `conn_id`, read without blocking the event loop."""
    if (reader := getattr(BaseHook, "aget_connection", None)) is not None:
        return (await reader(conn_id)).extra_dejson or {}
    # Airflow 3.0 has only the synchronous lookup: run it off the loop, the extras' parsing too
    # (it registers their secrets with the supervisor). Through asgiref, not a bare thread: on a
    # 3.0 triggerer a synchronous Task SDK call asks the supervisor over the loop's own stream
    # (async_to_sync), which works only from a thread sync_to_async started.
    return await sync_to_async(lambda: BaseHook.get_connection(conn_id).extra_dejson)() or {}


def triggerer_calls_on_kill() -> bool:
    """Whether this Airflow's triggerer calls a trigger's ``on_kill`` when a user marks its task
    failed/success or clears it (3.3+). Earlier 3.x releases only cancel the trigger."""
    from airflow.triggers.base import BaseTrigger

    return "on_kill" in vars(BaseTrigger)


async def atask_instance_state(task_instance: Any) -> str | None:
    """The current state of the deferred task a trigger serves, asked of the triggerer's supervisor
    through the Task SDK channel it offers triggers (the same one ``get_task_states`` uses), so the
    event loop never waits on a database. Raises when the channel is gone (triggerer stopping)."""
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import GetTaskStates

    map_index = getattr(task_instance, "map_index", None)
    map_index = map_index if map_index is not None and map_index >= 0 else None  # None: not mapped
    request = GetTaskStates(
        dag_id=task_instance.dag_id,
        task_ids=[task_instance.task_id],
        run_ids=[task_instance.run_id],
        map_index=map_index,
    )
    comms = task_runner.SUPERVISOR_COMMS
    # A synchronous channel: asgiref runs it off the loop yet still on it for its streams.
    response: Any = await (getattr(comms, "asend", None) or sync_to_async(comms.send))(request)
    key = task_instance.task_id if map_index is None else f"{task_instance.task_id}_{map_index}"
    try:
        state = response.task_states[task_instance.run_id][key]
    except (AttributeError, KeyError):
        raise LookupError(f"no state of {key} in run {task_instance.run_id}: {response!r}") from None
    return None if state is None else str(getattr(state, "value", state))


def triggerer_ends_tasks() -> bool:
    """Whether this Airflow's triggerer lets a trigger end its task (3.3+): ``TaskFailedEvent``
    goes to the task's retries as a worker's failure does (``handle_event_submit``), and the
    supervisor answers a trigger's requests (its XCom pushes) alongside the runner's own. On 3.0
    a failed task's retries are skipped, and an answer out of order fails the whole trigger runner
    ("Response read out of order", seen with these pushes)."""
    from airflow import __version__

    return tuple(int(part) for part in __version__.split(".")[:2]) >= (3, 3)


async def atask_xcom(method: str, task_instance: Any, key: str, **value: Any) -> Any:
    """``XCom.<method>`` (``set``, ``get_one``, ``delete``) for the task a trigger serves: through
    the triggerer's supervisor and the configured XCom backend, as a worker's push, off the loop."""
    ti = task_instance
    where = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": ti.map_index}
    # In a thread of its own (not asgiref's one shared thread): pushes of many triggers go at once.
    return await sync_to_async(_xcom, thread_sensitive=False)(method, key=key, **where, **value)


def _xcom(method: str, **arguments: Any) -> Any:
    from airflow.sdk.execution_time.xcom import XCom  # imported here, off the loop: it reads the config

    return getattr(XCom, method)(**arguments)
