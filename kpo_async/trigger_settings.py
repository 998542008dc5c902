"""`MonitorSettings`: how a trigger follows its pod, stored as the trigger's kwargs.

Written once here: `PodTrigger` stores these fields under their own names, `PodMonitor` and
`PodLogs` read them. Kwargs stored by another version still load (`from_kwargs`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any


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
    container_logs: Any = None
    init_container_logs: Any = None
    container_name_log_prefix_enabled: bool = True
    #: Where this host imports `log_formatter` from (``module:qualname``); None: the default format.
    log_formatter: str | None = None
    #: The scheduling window's end (epoch seconds) and the startup window that follows scheduling.
    #: Without them (kwargs stored by older versions) `startup_deadline` covers both.
    schedule_deadline: float | None = None
    startup_timeout_seconds: float | None = None

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> MonitorSettings:
        """The settings among stored kwargs; a kwarg this version does not know is dropped, so
        that a trigger stored by another version is still re-created."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            logging.getLogger(__name__).warning("PodTrigger: ignoring unknown kwargs %s", unknown)
        values = {key: value for key, value in kwargs.items() if key in known}
        values["secret_env_names"] = tuple(values.get("secret_env_names") or ())
        values["callbacks"] = tuple(values.get("callbacks") or ())
        return cls(**values)

    def to_kwargs(self) -> dict[str, Any]:
        """The settings as JSON-ready kwargs; tasks without callbacks store what earlier versions
        stored."""
        kwargs = asdict(self)
        kwargs["secret_env_names"] = list(self.secret_env_names)
        kwargs["callbacks"] = list(self.callbacks)
        if not self.callbacks:
            del kwargs["callbacks"]
        return kwargs
