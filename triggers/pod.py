"""`PodTrigger`: waits on the Airflow triggerer for a pod created by `AsyncKubernetesPodOperator`.

Everything a re-created trigger needs is in `serialize()`: the pod's identity, a secret-free
reference to the cluster (resolved on the triggerer host), the absolute deadlines fixed when the
task deferred, and the log cursor. The work itself lives in `kpo_async.monitor.PodMonitor`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kpo_async.clients import shared_client
from kpo_async.connection import ClusterRef
from kpo_async.logs import LogCursor
from kpo_async.monitor import ERROR, MonitorSettings, PodMonitor
from kpo_async.pods import delete_pod
from kpo_async.retry import describe

#: Upper bound for work done while the triggerer is shutting down or cancelling us.
_EXIT_WORK_SECONDS = 5.0


class PodTrigger(BaseTrigger):
    """Fires one event when the pod's base container has finished (or the pod cannot run).

    :param pod_name: the pod to follow.
    :param namespace: its namespace.
    :param cluster: `ClusterRef.to_dict()`: connection id / kubeconfig path / context, no secrets.
    :param startup_deadline: epoch seconds by which the base container must have started.
    :param execution_deadline: epoch seconds by which it must have finished (task's execution_timeout).
    :param log_cursor: where the log was delivered up to when this trigger was created.
    :param on_kill_action: ``delete_pod`` or ``keep_pod`` when a user kills the deferred task.
    :param secret_env_names: env vars whose values (read from the pod, never stored here) must be
        masked in the trigger log.
    """

    def __init__(
        self,
        *,
        pod_name: str,
        namespace: str,
        cluster: dict[str, Any],
        base_container_name: str = "base",
        get_logs: bool = True,
        do_xcom_push: bool = False,
        startup_deadline: float | None = None,
        execution_deadline: float | None = None,
        log_cursor: str | None = None,
        on_kill_action: str = "delete_pod",
        fallback_poll_seconds: float = 60.0,
        log_poll_seconds: float = 10.0,
        log_checkpoint_seconds: float = 300.0,
        log_events_on_startup: bool = True,
        secret_env_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.pod_name = pod_name
        self.namespace = namespace
        self.cluster = cluster
        self.base_container_name = base_container_name
        self.get_logs = get_logs
        self.do_xcom_push = do_xcom_push
        self.startup_deadline = startup_deadline
        self.execution_deadline = execution_deadline
        self.log_cursor = log_cursor
        self.on_kill_action = on_kill_action
        self.fallback_poll_seconds = fallback_poll_seconds
        self.log_poll_seconds = log_poll_seconds
        self.log_checkpoint_seconds = log_checkpoint_seconds
        self.log_events_on_startup = log_events_on_startup
        self.secret_env_names = list(secret_env_names or [])
        self._monitor: PodMonitor | None = None
        self._fired = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "triggers.pod.PodTrigger",
            {
                "pod_name": self.pod_name,
                "namespace": self.namespace,
                "cluster": self.cluster,
                "base_container_name": self.base_container_name,
                "get_logs": self.get_logs,
                "do_xcom_push": self.do_xcom_push,
                "startup_deadline": self.startup_deadline,
                "execution_deadline": self.execution_deadline,
                "log_cursor": self.log_cursor,
                "on_kill_action": self.on_kill_action,
                "fallback_poll_seconds": self.fallback_poll_seconds,
                "log_poll_seconds": self.log_poll_seconds,
                "log_checkpoint_seconds": self.log_checkpoint_seconds,
                "log_events_on_startup": self.log_events_on_startup,
                "secret_env_names": self.secret_env_names,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await shared_client(ClusterRef.from_dict(self.cluster))
            self._monitor = PodMonitor(
                client,
                self.namespace,
                self.pod_name,
                self.monitor_settings(),
                log_cursor=LogCursor.from_str(self.log_cursor),
                logger=self.log,
            )
            payload = await self._monitor.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Whatever went wrong, the task must resume on a worker so the pod is cleaned up.
            payload = {
                "status": ERROR,
                "namespace": self.namespace,
                "pod_name": self.pod_name,
                "reason": exc.__class__.__name__,
                "message": f"the trigger following pod {self.namespace}/{self.pod_name} failed on the "
                f"triggerer: {exc if str(exc) else describe(exc)}",
                "log_cursor": self._monitor.log_cursor.to_str() if self._monitor else self.log_cursor,
            }
        self._fired = True
        yield TriggerEvent(payload)

    def monitor_settings(self) -> MonitorSettings:
        return MonitorSettings(
            base_container=self.base_container_name,
            get_logs=self.get_logs,
            do_xcom_push=self.do_xcom_push,
            startup_deadline=self.startup_deadline,
            execution_deadline=self.execution_deadline,
            fallback_poll_seconds=self.fallback_poll_seconds,
            log_poll_seconds=self.log_poll_seconds,
            log_checkpoint_seconds=self.log_checkpoint_seconds,
            log_events_on_startup=self.log_events_on_startup,
            secret_env_names=tuple(self.secret_env_names),
        )

    async def cleanup(self) -> None:
        """Runs on every exit. Unless the event fired, record the log cursor for our successor."""
        if self._monitor is not None and not self._fired:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._monitor.checkpoint(), _EXIT_WORK_SECONDS)

    async def on_kill(self) -> None:
        """A user marked the deferred task failed/success or cleared it: stop the pod."""
        if self.on_kill_action != "delete_pod":
            return
        client = await shared_client(ClusterRef.from_dict(self.cluster))
        await delete_pod(client, self.namespace, self.pod_name)
        self.log.info(f"deleted pod {self.namespace}/{self.pod_name} because the task was killed")
