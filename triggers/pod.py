"""`PodTrigger`: waits on the Airflow triggerer for a pod created by `AsyncKubernetesPodOperator`.

Everything a re-created trigger needs is in `serialize()`: the pod's identity, a secret-free
reference to the cluster (resolved on the triggerer host), the absolute deadlines fixed when the
task deferred, and the log cursor. The work itself lives in `kpo_async.monitor.PodMonitor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, fields
from typing import Any, NoReturn

from airflow.triggers.base import (
    BaseTrigger,
    TaskFailedEvent,
    TaskSkippedEvent,
    TaskSuccessEvent,
    TriggerEvent,
)

from kpo_async.airflow_compat import atask_instance_state, atask_xcom, triggerer_calls_on_kill
from kpo_async.clients import ClusterClient, check_same_cluster, shared_client
from kpo_async.connection import ClusterRef
from kpo_async.finish import FinishSettings, finish_pod
from kpo_async.identity import FOLLOWED_BY_TRY_ANNOTATION
from kpo_async.log_follower import Formatter
from kpo_async.monitor import PodMonitor
from kpo_async.outcome import PodOutcome, Status
from kpo_async.pods import delete_pod, read_pod, release_pod
from kpo_async.retry import describe
from kpo_async.trigger_settings import ContainerSelection, MonitorSettings

#: Upper bound for work done while the triggerer is shutting down or cancelling us.
_EXIT_WORK_SECONDS = 5.0
#: Upper bound for the kill a cancelled trigger does itself on Airflow < 3.3 (the state lookup and
#: the pod delete), as the triggerer's ``on_kill_timeout`` bounds ``on_kill`` on 3.3+.
_SELF_KILL_SECONDS = 30.0
#: Upper bound for the task state lookup that decides a kill (`on_kill`).
_STATE_SECONDS = 20.0
#: Task states in which a worker may still resume this try (or the trigger lives on elsewhere):
#: a cancelled trigger whose task is in one of them leaves the pod alone.
_TASK_STILL_SERVED = frozenset({"deferred", "scheduled", "queued", "running", "up_for_reschedule"})
#: `end_from_trigger`: the XCom where a trigger records how it ended the task, from just before it
#: cleans the pod up until the end is committed, so that a successor started after a crash in
#: between (the pod gone, the task still deferred) ends the task the same way.
ENDED_XCOM = "_kpo_async_ended"
#: The largest XCom value (JSON) the triggerer pushes: its supervisor, which every trigger shares,
#: reads the push between their work; a larger value waits for a worker.
_LARGEST_XCOM_HERE = 1 << 20
#: How long an ended trigger waits to be cancelled (its task's end committed) before it ends itself.
_COMMIT_WAIT_SECONDS = 60.0


class PodTrigger(BaseTrigger):
    """Fires one event when the pod's base container has finished (or the pod cannot run).

    :param pod_name: the pod to follow.
    :param namespace: its namespace.
    :param cluster: `ClusterRef.to_dict()`: connection id / kubeconfig path / context, no secrets.
    :param log_cursor: where the log was delivered up to when this trigger was created.
    :param on_kill_action: ``delete_pod`` or ``keep_pod`` when a user kills the deferred task.
    :param cluster_fingerprint: the cluster the worker created the pod on (server URL, CA digest,
        connection; no secrets). The trigger refuses to follow the pod on another cluster.
    :param end_from_trigger: `FinishSettings` as a dict: end the task here (XCom, cleanup, a
        task-end event) where this trigger can; None: the task resumes on a worker.

    The other parameters are the fields of `kpo_async.trigger_settings.MonitorSettings`, which
    says what each one means. A kwarg this version does not know (a row stored by another
    version) is dropped with a warning, so that the row still resumes; mypy refuses one in code.
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
        base_container_name: str = "base",
        get_logs: bool = True,
        do_xcom_push: bool = False,
        startup_deadline: float | None = None,
        execution_deadline: float | None = None,
        schedule_deadline: float | None = None,
        startup_timeout_seconds: float | None = None,
        fallback_poll_seconds: float = 60.0,
        log_poll_seconds: float = 10.0,
        log_checkpoint_seconds: float = 300.0,
        log_events_on_startup: bool = True,
        secret_env_names: Sequence[str] = (),
        callbacks: Sequence[str] = (),
        container_logs: ContainerSelection = None,
        init_container_logs: ContainerSelection = None,
        container_name_log_prefix_enabled: bool = True,
        log_formatter: str | None = None,
        end_from_trigger: dict[str, Any] | None = None,
        **from_another_version: NoReturn,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if from_another_version:  # stored by another version: a row must still resume
            self.log.warning("PodTrigger: ignoring unknown kwargs %s", sorted(from_another_version))
        self.pod_name = pod_name
        self.namespace = namespace
        self._pod_ref = f"{namespace}/{pod_name}"
        self.cluster = cluster
        self.log_cursor = log_cursor
        self.on_kill_action = on_kill_action
        self.cluster_fingerprint = cluster_fingerprint
        # The MonitorSettings fields are this method's parameters of the same names.
        given = {**locals(), "secret_env_names": tuple(secret_env_names), "callbacks": tuple(callbacks)}
        self.settings = MonitorSettings(**{f.name: given[f.name] for f in fields(MonitorSettings)})
        self.finish = FinishSettings(**end_from_trigger) if end_from_trigger else None
        self._monitor: PodMonitor | None = None
        self._fired = False
        self._cancelled = False
        self._ended: Any = None  # the task instance this trigger ended

    def serialize(self) -> tuple[str, dict[str, Any]]:
        own = ("pod_name", "namespace", "cluster", "log_cursor", "on_kill_action", "cluster_fingerprint")
        kwargs = {**{name: getattr(self, name) for name in own}, **asdict(self.settings)}
        kwargs.update(secret_env_names=list(kwargs["secret_env_names"]), callbacks=list(kwargs["callbacks"]))
        if not self.settings.callbacks:  # what versions before callbacks stored
            del kwargs["callbacks"]
        if self.finish is not None:
            kwargs["end_from_trigger"] = asdict(self.finish)
        return "triggers.pod.PodTrigger", kwargs

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await shared_client(ClusterRef.from_dict(self.cluster))
            check_same_cluster(self.cluster_fingerprint, client, self._pod_ref)
            ended = await self._recorded_end()
            outcome = PodOutcome.from_payload(ended) if ended else await self.follow(client, self.log)
            event = await self._end_here(client, outcome, bool(ended)) if self.finish else None
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
                message=f"the trigger following pod {self._pod_ref} failed on the "
                f"triggerer: {exc if str(exc) else describe(exc)}",
                log_cursor=self._monitor.logs.cursor if self._monitor else self.log_cursor,
            )
            event = None
        self._fired = True
        yield event or TriggerEvent(outcome.to_payload())  # type: ignore[no-untyped-call]
        if self._ended is not None:
            # The triggerer cancels an ended trigger once the end is committed; cleanup() then
            # removes the record. Waiting here instead of asking for the state keeps the supervisor,
            # which every trigger shares, free for the pushes of other tasks ending meanwhile.
            await asyncio.sleep(_COMMIT_WAIT_SECONDS)

    async def _recorded_end(self) -> dict[str, Any] | None:
        """`end_from_trigger`: the end a predecessor recorded before it stopped (a crash after the
        record), or None. Asked before following the pod: this is often the triggerer's first request
        of its supervisor, whose one-time build of Airflow's in-process execution API (about 9 s here,
        no heartbeat meanwhile) is then paid while the pod runs, not once it has ended."""
        ti = getattr(self, "task_instance", None)
        try:
            return await atask_xcom("get_one", ti, ENDED_XCOM) if self.finish and ti else None
        except Exception as exc:  # follow the pod as usual; its end is still this trigger's to make
            self.log.warning("end_from_trigger: could not look for an earlier end: %s", describe(exc))
            return None

    async def _end_here(self, client: ClusterClient, outcome: PodOutcome, ended: bool) -> TriggerEvent | None:
        """`end_from_trigger`: push the XCom, record the end, clean the pod up; the task-end event.
        None: a worker finishes the task (the log says why), also when ending it here failed.
        `ended`: `outcome` is a predecessor's record (its XComs are pushed)."""
        ti, finish = getattr(self, "task_instance", None), self.finish
        assert finish is not None
        try:
            skip = not outcome.succeeded and outcome.exit_code in finish.skip_on_exit_code
            size = len(json.dumps(outcome.xcom)) if self.settings.do_xcom_push else 0
            worker_needed = {
                "airflow dags test runs the trigger in line": ti is None,
                "the cluster took the pod away: a worker decides on a relaunch": outcome.disruption,
                f"the pod was not followed to its end ({outcome.reason})": outcome.status is Status.ERROR,
                "an unpullable image fails the task without retries": outcome.reason == "InvalidImageName",
                f"its XCom's {size} bytes are over the {_LARGEST_XCOM_HERE} a trigger pushes": size
                > _LARGEST_XCOM_HERE,
            }
            if why := next((why for why, needed in worker_needed.items() if needed), None):
                self.log.info("end_from_trigger: the task finishes on a worker, as %s", why)
                return None
            if not ended:
                if self.settings.do_xcom_push and outcome.xcom is not None:
                    await atask_xcom("set", ti, "return_value", value=outcome.xcom)
                await atask_xcom("set", ti, ENDED_XCOM, value={**outcome.to_payload(), "xcom": None})
            await finish_pod(client, outcome, finish, self.log, secret_names=self.settings.secret_env_names)
        except Exception as exc:  # what was done here the worker does again, unharmed
            self.log.warning(
                "end_from_trigger: the task finishes on a worker, as ending it failed: %s", describe(exc)
            )
            return None
        self._ended = ti
        if outcome.succeeded:
            return TaskSuccessEvent()
        if skip:
            self.log.info("pod %s exited with code %s: skipping", self._pod_ref, outcome.exit_code)
            return TaskSkippedEvent()
        self.log.error("%s", outcome.failure_message())
        return TaskFailedEvent()

    async def _forget_ending(self) -> None:
        """Once the task's end is committed (it is no longer deferred), remove the record of it."""
        if await self._task_state() != "deferred":
            await atask_xcom("delete", self._ended, ENDED_XCOM)
            self._ended = None

    async def follow(
        self, client: ClusterClient, logger: Any, formatter: Formatter | None = None
    ) -> PodOutcome:
        """Follow the pod to its end: here, or on the worker of a task with ``deferrable=False``."""
        self._monitor = PodMonitor(
            client,
            self.namespace,
            self.pod_name,
            self.settings,
            log_cursor=self.log_cursor,
            logger=logger,
            formatter=formatter,
        )
        return await self._monitor.run()

    async def cleanup(self) -> None:
        """Runs on every exit. Unless the event fired, record the log cursor for our successor;
        on Airflow < 3.3, which only cancels the trigger, call `on_kill` ourselves."""
        if self._monitor is not None and not self._fired:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._monitor.logs.checkpoint(), _EXIT_WORK_SECONDS)
        if self._ended is not None:  # cancelled once its end was committed, or stopping before
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._forget_ending(), _EXIT_WORK_SECONDS)
        if self._cancelled and not self._fired and not triggerer_calls_on_kill():
            try:
                await asyncio.wait_for(self.on_kill(), _SELF_KILL_SECONDS)
            except Exception as exc:  # the pod stays; the task's next try or a user cleans it up
                self.log.warning("could not kill pod %s; leaving it: %s", self._pod_ref, describe(exc))

    async def on_kill(self) -> None:
        """A user marked the deferred task failed/success or cleared it: stop the pod, unless a
        worker may still resume the task (its current state tells).

        Airflow 3.3+ calls this, also when another triggerer took the trigger over (a busy
        triggerer whose heartbeat aged out finds its trigger assigned elsewhere): the pod,
        followed by the other triggerer, must live on. Before 3.3 Airflow only cancels a trigger,
        the same way as when the triggerer stops or hands it over, and `cleanup` calls this.
        """
        if self._fired:  # the event is out: the worker, or this trigger, finishes the pod
            return
        try:
            state = await self._task_state()
        except Exception as exc:
            # A supervisor that does not answer is a sick triggerer's, and a stalled triggerer gets
            # on_kill for triggers taken over too (seen under load): a pod possibly followed
            # elsewhere is not deleted on a guess. A user's kill on a healthy triggerer is answered.
            self.log.warning(
                "could not read the task's state, so pod %s is left running (%s); if the task was "
                "marked failed or success, delete it by hand",
                self._pod_ref,
                describe(exc),
            )
            return
        if state in _TASK_STILL_SERVED:
            if triggerer_calls_on_kill():  # before 3.3: a stop or hand-over, nothing to report
                self.log.warning(
                    "this triggerer dropped the trigger of a task that is still %s (another triggerer "
                    "took it over, or a later try follows the pod): pod %s is left running",
                    state,
                    self._pod_ref,
                )
            return
        self.log.info("the trigger was cancelled and its task is now %s: killing the pod", state or "cleared")
        # Deleted (keep_pod: released), unless a later try of the task adopted it meanwhile: a
        # cleared task's next try may reattach to the pod before this cancelled trigger kills it.
        client = await shared_client(ClusterRef.from_dict(self.cluster))
        pod = await read_pod(client, self.namespace, self.pod_name)
        follower = int(pod.annotations.get(FOLLOWED_BY_TRY_ANNOTATION, 0)) if pod is not None else 0
        mine = getattr(getattr(self, "task_instance", None), "try_number", None)  # None: no triggerer
        if mine is not None and follower > mine:
            self.log.warning(
                "pod %s is followed by try %s of the task now (the task was cleared and reattached "
                "to it): left running",
                self._pod_ref,
                follower,
            )
            return
        # keep_pod: released, so that it can go once deleted
        done = "deleted" if self.on_kill_action == "delete_pod" else "released"
        await (delete_pod if done == "deleted" else release_pod)(client, self.namespace, self.pod_name)
        self.log.info("%s pod %s because the task was killed", done, self._pod_ref)

    async def _task_state(self) -> str | None:
        """The current state of the task this trigger serves, asked of the triggerer's supervisor."""
        task_instance = getattr(self, "task_instance", None)
        if task_instance is None:
            raise LookupError("the trigger has no task instance")
        # Shielded: a request abandoned between its write and its answer would leave that answer
        # for the next reader of the shared supervisor channel, which then fails the whole
        # trigger runner (3.0 checks the ids). A busy supervisor can take seconds to answer.
        return await asyncio.wait_for(asyncio.shield(atask_instance_state(task_instance)), _STATE_SECONDS)
