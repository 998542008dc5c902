"""The end of a pod's run, on a worker (`execute_complete`) or on the triggerer (`end_from_trigger`):
report a failure as the official operator does, then delete or keep the pod as `on_finish_action` says.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from kpo_async import pods
from kpo_async.airflow_compat import redact
from kpo_async.clients import ClusterClient
from kpo_async.outcome import PodOutcome
from kpo_async.pod_state import PodState


@dataclass(frozen=True)
class FinishSettings:
    """The operator's arguments of the same names; the trigger's ``end_from_trigger`` kwarg."""

    on_finish_action: str = "delete_pod"
    log_events_on_failure: bool = False
    log_pod_spec_on_failure: bool = True
    skip_on_exit_code: tuple[int, ...] = ()


async def finish_pod(
    client: ClusterClient,
    outcome: PodOutcome,
    settings: FinishSettings,
    log: Any,
    *,
    report: bool = True,
    secret_names: Collection[str] = (),
) -> None:
    namespace, pod_name, succeeded = outcome.namespace, outcome.pod_name, outcome.succeeded
    if not succeeded and report:
        await report_failure(client, namespace, pod_name, settings, log, secret_names)
    action = settings.on_finish_action
    delete = (
        action == "delete_pod"
        or (action == "delete_succeeded_pod" and succeeded)
        # active: the base container never ran to an exit (well or not)
        or (action == "delete_active_pod" and outcome.exit_code is None)
    )
    if delete:
        if await pods.delete_pod(client, namespace, pod_name):
            log.info("deleted pod %s/%s", namespace, pod_name)
    else:
        # Labelled as consumed, so that no later try adopts it; released, so that it can go.
        await pods.release_pod(client, namespace, pod_name, labels={pods.FINALIZED_LABEL: "true"})
        log.info("kept pod %s/%s (on_finish_action=%s)", namespace, pod_name, action)


async def report_failure(
    client: ClusterClient,
    namespace: str,
    pod_name: str,
    settings: FinishSettings,
    log: Any,
    secret_names: Collection[str] = (),
) -> None:
    """As the official operator on failure: the containers' states and the pod's events
    (`log_events_on_failure`), and the pod itself with secret env values masked
    (`log_pod_spec_on_failure`; `secret_names`: masked by name, for a masker that has not seen them)."""
    pod = None
    if settings.log_pod_spec_on_failure or settings.log_events_on_failure:
        pod = await pods.read_pod_json(client, namespace, pod_name)
    if pod is not None and settings.log_events_on_failure:
        found = PodState.from_api(pod)
        log.info("pod phase: %s, reason: %s", found.phase, found.reason)
        for state in (*found.init_containers, *found.containers):
            failed = state.state == "waiting" or (state.terminated and state.exit_code != 0)
            (log.error if failed else log.info)(
                "container %s: %s, reason=%s, exit_code=%s, message=%s",
                state.name,
                state.state,
                state.reason,
                state.exit_code,
                state.message,
            )
    if settings.log_events_on_failure:
        # The official levels and words: a Warning event at warning, any other at info.
        for event in await pods.pod_events(client, namespace, pod_name):
            (log.warning if event.get("type") == "Warning" else log.info)(
                "Pod Event: %s - %s", event.get("reason"), event.get("message")
            )
    if pod is not None and settings.log_pod_spec_on_failure:
        for env in pods.container_env(pod):
            if env.get("value"):
                env["value"] = (
                    "***" if env.get("name") in secret_names else redact(env["value"], env.get("name"))
                )
        shown = {"metadata": {k: pod["metadata"].get(k) for k in ("name", "namespace", "labels")}}
        log.info("pod spec: %s", json.dumps({**shown, "spec": pod.get("spec") or {}}, sort_keys=True))
