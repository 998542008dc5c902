"""Where a pod's time went, from the state the watch already delivered (no extra API request).

Kubernetes stamps conditions and container states to the second, so the figures are whole
seconds; a stage the pod skipped or whose stamp is missing is left out.
"""

from __future__ import annotations

from kpo_async.identity import QUOTA_WAIT_ANNOTATION, RELAUNCH_ANNOTATION
from kpo_async.pod_state import PodState


def pod_timeline(state: PodState, base_container: str, *, ended_at: float) -> dict[str, int]:
    """Seconds per stage: quota wait (before the pod existed), scheduling, init containers, image
    pull and container start, running, termination (until the pod's end was seen); which relaunch
    of its try the pod was (the operator's annotations tell the first and the last)."""
    base = state.container(base_container)
    started, finished = (base.started_at, base.finished_at) if base else (None, None)
    marks = [
        ("scheduling", state.created_at, state.scheduled_at),
        ("init_containers", state.scheduled_at, state.initialized_at if state.init_containers else None),
        ("image_pull_and_start", state.initialized_at or state.scheduled_at, started),
        ("running", started, finished),
        ("termination", finished, ended_at if finished else None),
    ]
    quota_wait = float(state.annotations.get(QUOTA_WAIT_ANNOTATION, 0))
    timeline = {"quota_wait": round(quota_wait)} if quota_wait else {}
    timeline.update({stage: round(max(0.0, end - begin)) for stage, begin, end in marks if begin and end})
    if relaunch := int(state.annotations.get(RELAUNCH_ANNOTATION, 0)):
        timeline["relaunches"] = relaunch
    return timeline


def describe_timeline(timeline: dict[str, int]) -> str:
    """``scheduling 1s, image pull and start 4s, running 30s``."""
    parts = [
        f"{stage.replace('_', ' ')} {value:g}{'' if stage == 'relaunches' else 's'}"
        for stage, value in timeline.items()
    ]
    return ", ".join(parts) or "no stage recorded"
