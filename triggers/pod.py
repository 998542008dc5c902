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

from kpo_async.airflow_compat import atask_instance_state, triggerer_calls_on_kill
from kpo_async.clients import ClusterClient, check_same_cluster, shared_client
from kpo_async.connection import ClusterRef
from kpo_async.identity import FOLLOWED_BY_TRY_ANNOTATION
from kpo_async.monitor import PodMonitor
from kpo_async.outcome import PodOutcome, Status
from kpo_async.pods import delete_pod, read_pod_json
from kpo_async.retry import describe
from kpo_async.trigger_settings import MonitorSettings

#: Upper bound for work done while the triggerer is shutting down or cancelling us.
_EXIT_WORK_SECONDS = 5.0
#: Upper bound for the kill a cancelled trigger does itself on Airflow < 3.3 (the state lookup and
#: the pod delete), as the triggerer's ``on_kill_timeout`` bounds ``on_kill`` on 3.3+.
_SELF_KILL_SECONDS = 30.0
#: Upper bound for the task state lookup of a cancelled trigger (Airflow < 3.3).
_STATE_SECONDS = 20.0
#: Task states in which a worker may still resume this try (or the trigger lives on elsewhere):
#: a cancelled trigger whose task is in one of them leaves the pod alone.
_TASK_STILL_SERVED = frozenset({"deferred", "scheduled", "queued", "running", "up_for_reschedule"})


class PodTrigger(BaseTrigger):
    """Fires one event when the pod's base container has finished (or the pod cannot run).

    :param pod_name: the pod to follow.
    :param namespace: its namespace.
    :param cluster: `ClusterRef.to_dict()`: connection id / kubeconfig path / context, no secrets.
    :param log_cursor: where the log was delivered up to when this trigger was created.
    :param on_kill_action: ``delete_pod`` or ``keep_pod`` when a user kills the deferred task.
    :param cluster_fingerprint: the cluster the worker created the pod on (server URL, CA digest,
        connection; no secrets). The trigger refuses to follow the pod on another cluster.
    :param settings: the fields of `kpo_async.trigger_settings.MonitorSettings` (base_container_name,
        get_logs, do_xcom_push, startup/execution deadlines, poll and checkpoint intervals,
        secret_env_names ...), written once there and stored as kwargs of the same names.
    """

    def __init__(
        self,
        *,
        pod_name: str,
        namespace: str,
        cluster: dict[str, Any],
        log_cursor: str | None = None,
        on_kill_action: str = "delete_pod",
        cluster_fingerprint: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.pod_name = pod_name
        self.namespace = namespace
        self.cluster = cluster
        self.log_cursor = log_cursor
        self.on_kill_action = on_kill_action
        self.cluster_fingerprint = cluster_fingerprint
        self.settings = MonitorSettings.from_kwargs(settings)
        self._monitor: PodMonitor | None = None
        self._fired = False
        self._cancelled = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "triggers.pod.PodTrigger",
            {
                "pod_name": self.pod_name,
                "namespace": self.namespace,
                "cluster": self.cluster,
                "log_cursor": self.log_cursor,
                "on_kill_action": self.on_kill_action,
                "cluster_fingerprint": self.cluster_fingerprint,
                **self.settings.to_kwargs(),
            },
        )

    def monitor_settings(self) -> MonitorSettings:
        return self.settings

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await shared_client(ClusterRef.from_dict(self.cluster))
            check_same_cluster(self.cluster_fingerprint, client, f"{self.namespace}/{self.pod_name}")
            self._monitor = PodMonitor(
                client,
                self.namespace,
                self.pod_name,
                self.settings,
                log_cursor=self.log_cursor,
                logger=self.log,
            )
            outcome = await self._monitor.run()
        except asyncio.CancelledError:
            self._cancelled = True
            raise
        except Exception as exc:
            # Whatever went wrong, the task must resume on a worker so the pod is cleaned up.
            outcome = PodOutcome(
                Status.ERROR,
                self.namespace,
                self.pod_name,
                reason=exc.__class__.__name__,
                message=f"the trigger following pod {self.namespace}/{self.pod_name} failed on the "
                f"triggerer: {exc if str(exc) else describe(exc)}",
                log_cursor=self._monitor.logs.cursor if self._monitor else self.log_cursor,
            )
        self._fired = True
        yield TriggerEvent(outcome.to_payload())  # type: ignore[no-untyped-call]

    async def cleanup(self) -> None:
        """Runs on every exit. Unless the event fired, record the log cursor for our successor;
        on Airflow < 3.3, a cancellation caused by a user's action on the task kills the pod."""
        if self._monitor is not None and not self._fired:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._monitor.logs.checkpoint(), _EXIT_WORK_SECONDS)
        if self._cancelled and not self._fired and not triggerer_calls_on_kill():
            try:
                await asyncio.wait_for(self._kill_if_task_left_deferral(), _SELF_KILL_SECONDS)
            except Exception as exc:  # the pod stays; the task's next try or a user cleans it up
                self.log.warning(
                    f"could not tell whether pod {self.namespace}/{self.pod_name} should be deleted "
                    f"after the trigger was cancelled; leaving it: {describe(exc)}"
                )

    async def _kill_if_task_left_deferral(self) -> None:
        """Airflow before 3.3 cancels a trigger the same way whether a user marked or cleared its
        task or the triggerer merely stops or hands it to another triggerer. The task's current
        state tells them apart: a task no worker will resume any more means the user acted."""
        state = await self._task_state()
        if state in _TASK_STILL_SERVED:
            return
        self.log.info(f"the trigger was cancelled and its task is now {state or 'cleared'}: killing the pod")
        await self._delete_pod()

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user marked the deferred task failed/success or cleared it: stop the pod.

        Airflow also calls this when another triggerer took the trigger over (a busy triggerer
        whose heartbeat aged out finds its trigger assigned elsewhere): the task is then still
        deferred, and the pod, followed by the other triggerer, must live on.
        """
        try:
            state = await self._task_state()
        except Exception as exc:
            # A supervisor that does not answer is a sick triggerer's, and a stalled triggerer gets
            # on_kill for triggers taken over too (seen under load): a pod possibly followed
            # elsewhere is not deleted on a guess. A user's kill on a healthy triggerer is answered.
            self.log.warning(
                f"could not read the task's state, so pod {self.namespace}/{self.pod_name} is left "
                f"running ({describe(exc)}); if the task was marked failed or success, delete it by hand"
            )
            return
        if state in _TASK_STILL_SERVED:
            self.log.warning(
                f"this triggerer dropped the trigger of a task that is still {state} (another "
                f"triggerer took it over, or a later try follows the pod): pod "
                f"{self.namespace}/{self.pod_name} is left running"
            )
            return
        await self._delete_pod()

    async def _task_state(self) -> str | None:
        """The current state of the task this trigger serves, asked of the triggerer's supervisor."""
        task_instance = getattr(self, "task_instance", None)
        if task_instance is None:
            raise LookupError("the trigger has no task instance")
        # Shielded: a request abandoned between its write and its answer would leave that answer
        # for the next reader of the shared supervisor channel, which then fails the whole
        # trigger runner (3.0 checks the ids). A busy supervisor can take seconds to answer.
        return await asyncio.wait_for(asyncio.shield(atask_instance_state(task_instance)), _STATE_SECONDS)

    async def _delete_pod(self) -> None:
        if self.on_kill_action != "delete_pod":
            return
        client = await shared_client(ClusterRef.from_dict(self.cluster))
        follower = await self._later_try_following(client)
        if follower is not None:
            self.log.warning(
                f"pod {self.namespace}/{self.pod_name} is followed by try {follower} of the task now "
                "(the task was cleared and reattached to it): left running"
            )
            return
        await delete_pod(client, self.namespace, self.pod_name)
        self.log.info(f"deleted pod {self.namespace}/{self.pod_name} because the task was killed")

    async def _later_try_following(self, client: ClusterClient) -> int | None:
        """The try that adopted the pod since this trigger's try deferred, if any: a cleared task's
        next try may reattach to the pod before this cancelled trigger gets to kill it."""
        mine = getattr(getattr(self, "task_instance", None), "try_number", None)
        if mine is None:  # not run by a triggerer: nothing to compare with
            return None
        pod = await read_pod_json(client, self.namespace, self.pod_name)
        annotations = ((pod or {}).get("metadata") or {}).get("annotations") or {}
        follower = int(annotations.get(FOLLOWED_BY_TRY_ANNOTATION, 0))
        return follower if follower > mine else None
