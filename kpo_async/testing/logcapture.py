"""`capture_logs`: the log lines of a test, whichever logging the running Airflow routes them to.

Airflow 3.1+ gives operators and triggers structlog loggers; Airflow 3.0 gives them stdlib
``logging`` loggers (``LoggingMixin``). structlog's own ``capture_logs`` sees only the first kind,
so this one also collects stdlib records, turned into the same dicts (``event``, ``log_level`` and
the record's logger name) and passed through the same processors, in the order they were emitted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.testing import LogCapture

Processor = Callable[[Any, str, dict[str, Any]], Any]


class _StdlibCapture(logging.Handler):
    """Appends each stdlib record, as structlog's ``LogCapture`` would, to a shared list."""

    def __init__(self, entries: list[dict[str, Any]], processors: Sequence[Processor]) -> None:
        super().__init__(logging.DEBUG)
        self.entries = entries
        self.processors = processors

    def emit(self, record: logging.LogRecord) -> None:
        method = record.levelname.lower()
        event: Any = {"event": record.getMessage(), "log_level": method, "logger": record.name}
        if record.exc_info and record.exc_info[1] is not None:
            event["exc_info"] = record.exc_info
        try:
            for processor in self.processors:
                event = processor(None, method, event)
        except structlog.DropEvent:
            return
        self.entries.append(event)


@contextmanager
def capture_logs(processors: Sequence[Processor] = ()) -> Iterator[list[dict[str, Any]]]:
    """Like ``structlog.testing.capture_logs``, plus every stdlib ``logging`` record that reaches
    the root logger meanwhile (root at DEBUG, Airflow's loggers lowered to it for the duration),
    in place of the root's own handlers."""
    capture = LogCapture()
    entries = capture.entries
    old_processors = structlog.get_config()["processors"]
    handler = _StdlibCapture(entries, processors)
    root = logging.getLogger()
    old_level, old_handlers = root.level, list(root.handlers)
    lowered = _lower_levels()
    # Captured instead of emitted, as structlog's capture replaces its whole processor chain:
    # the root's other handlers (the console, pytest's own capture) would keep every line in
    # memory or print it, which a test of bounded memory on a 100 MB log cannot afford.
    root.handlers = [handler]
    root.setLevel(logging.DEBUG)
    try:
        structlog.configure(processors=[*processors, capture])
        yield entries
    finally:
        structlog.configure(processors=old_processors)
        root.handlers = old_handlers
        root.setLevel(old_level)
        for logger, level in lowered:
            logger.setLevel(level)


def _lower_levels() -> list[tuple[logging.Logger, int]]:
    """Let DEBUG through Airflow's own loggers (3.0 sets ``airflow.task``, the operator's parent, to
    INFO; structlog capture sees every level too); returns what to restore. Third-party loggers
    keep their levels, as in production."""
    lowered = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if not (name == "airflow" or name.startswith("airflow.")):
            continue
        if isinstance(logger, logging.Logger) and logger.level > logging.DEBUG:
            lowered.append((logger, logger.level))
            logger.setLevel(logging.DEBUG)
    return lowered


def pod_lines(events: Sequence[dict[str, Any] | str], container: str = "base") -> list[str]:
    """The pod's lines the trigger logged for `container`, in order, from captured events (dicts
    with ``event``) or event texts. Under load one record carries several lines, each prefixed
    (kpo_async.log_records), so records are split on newlines."""
    prefix = f"[{container}] "
    texts = (e if isinstance(e, str) else str(e.get("event", "")) for e in events)
    return [line[len(prefix) :] for text in texts for line in text.split("\n") if line.startswith(prefix)]
