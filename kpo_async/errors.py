"""Exceptions raised by kpo-async.

Every exception derives from :class:`KpoAsyncError` (an ``AirflowException``), so callers can catch all of
them at once. Keep one class per distinct failure a user or the operator must react to differently.
"""

from __future__ import annotations

from kpo_async.airflow_compat import AirflowException


class KpoAsyncError(AirflowException):
    """Base class of every error raised by kpo-async."""


class InvalidArgumentError(KpoAsyncError, ValueError):
    """An operator argument (or a pod template) is unusable; the message names it and says how to fix it."""

    def __init__(self, argument: str, problem: str, fix: str) -> None:
        self.argument = argument
        self.problem = problem.rstrip(". ")
        self.fix = fix
        super().__init__(f"Invalid {argument}: {self.problem}. Fix: {fix}")

    def __reduce__(self) -> tuple[type[InvalidArgumentError], tuple[str, str, str]]:
        # The default reduce would call __init__ with the formatted message only.
        return (type(self), (self.argument, self.problem, self.fix))


class ClusterUnreachableError(KpoAsyncError):
    """The API server could not be reached, or kept failing, until retries ran out."""


class PermissionDeniedError(KpoAsyncError):
    """The API server answered 403: the operator's identity lacks a verb the Role must grant."""


class XComError(KpoAsyncError):
    """The pod's XCom result is missing, empty or not JSON."""


class PodFailedError(KpoAsyncError):
    """The pod did not complete successfully; the message says why."""
