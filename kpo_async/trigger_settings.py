"""`MonitorSettings`: how a trigger follows its pod, stored as the trigger's kwargs.

`PodTrigger` takes these fields as typed keyword arguments of the same names and stores them so;
`PodMonitor` and `PodLogs` read them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

#: `container_logs` / `init_container_logs`: True (every container but the XCom sidecar), a
#: container's name or names; None: the base container (`container_logs`) or none (init ones).
ContainerSelection = bool | str | Collection[str] | None


@dataclass(frozen=True)
class MonitorSettings:
    """How to follow the pod. The field names are the trigger's kwargs (see `PodTrigger`)."""

    base_container_name: str = "base"
    get_logs: bool = True
    do_xcom_push: bool = False
    #: Wall-clock deadlines (epoch seconds), fixed when the task deferred: a restart keeps them.
    startup_deadline: float | None = None
    execution_deadline: float | None = None
    #: How long to trust a silent watch before reading the pod directly.
    fallback_poll_seconds: float = 60.0
    #: Beyond the shared limit of follow streams, read new log lines this often instead.
    log_poll_seconds: float = 10.0
    #: How often to record the log cursor on the pod while lines flow (0: only on exit). Each is
    #: a PATCH: 300 s keeps them near 0.2 per pod-minute; a SIGKILLed triggerer's successor
    #: repeats at most that much output (a graceful stop repeats none).
    log_checkpoint_seconds: float = 300.0
    #: Log the pod's events (Scheduled, Pulling, FailedScheduling...) as they happen while it starts.
    log_events_on_startup: bool = True
    #: Env vars whose values are secrets: masked wherever this process logs (names only, no values).
    secret_env_names: tuple[str, ...] = ()
    #: Import paths of the task's `callbacks` classes, called here at the triggerer's moments.
    callbacks: tuple[str, ...] = ()
    #: Whose logs to stream: `container_logs` (a name, names or True; None: the base container) and
    #: `init_container_logs`, each line prefixed with its container's name or not.
    container_logs: ContainerSelection = None
    init_container_logs: ContainerSelection = None
    container_name_log_prefix_enabled: bool = True
    #: Where this host imports `log_formatter` from (``module:qualname``); None: the default format.
    log_formatter: str | None = None
    #: The scheduling window's end (epoch seconds) and the startup window that follows scheduling.
    #: Without them (kwargs stored by older versions) `startup_deadline` covers both.
    schedule_deadline: float | None = None
    startup_timeout_seconds: float | None = None
