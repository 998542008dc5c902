"""Exceptions raised by kpo-async.

Every exception derives from :class:`KpoAsyncError` (an ``AirflowException``), so callers can catch all of
them at once. Keep one class per distinct failure a user or the operator must react to differently.
"""

from __future__ import annotations

from typing import Any

from kpo_async.airflow_compat import AirflowException, AirflowFailException


class KpoAsyncError(AirflowException):
    """Base class of every error raised by kpo-async."""


class InvalidArgumentError(KpoAsyncError, AirflowFailException, ValueError):
    """An operator argument (or a pod template) is unusable; the message names it and says how to fix it.

    The task fails without its retries (as `AirflowFailException`): a retry would be refused again.
    """

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


class PodCannotRunError(PodFailedError, AirflowFailException):
    """The pod can never run as specified (an invalid image reference): no retry is made."""


class ApiError(KpoAsyncError):
    """The API server answered a request with an error status; `kpo_async.api` picks the subclass."""

    #: The exception's text, filled in from the error's attributes.
    template = "{what} failed: HTTP {status}: {message}"

    def __init__(self, what: str, status: int, message: str, headers: Any = None) -> None:
        self.what = what
        self.status = status
        self.message = message
        self.headers = headers  # keeps Retry-After for the retry loop
        super().__init__(self.template.format_map(vars(self)))


class NotFound(ApiError):
    """404: the object (or its namespace) does not exist."""


class Conflict(ApiError):
    """409: the object already exists or changed meanwhile."""


class Gone(ApiError):
    """410: a watch's resourceVersion is too old; re-list."""


class Unprocessable(ApiError):
    """422: the API server rejected the object; `message` names the field."""


class Unauthorized(ApiError):
    """401: the API server refused the credentials."""

    template = (
        "{what} failed: the API server refused the credentials (401). "
        "Fix: check the connection's kubeconfig / token on this host"
    )


class Refused(ApiError):
    """403 from an admission check (ResourceQuota, PodSecurity), not from a missing Role rule."""

    template = "{what} was refused ({status}): {message}"


class QuotaExceeded(Refused):
    """403 from a ResourceQuota: the namespace has no room for the pod now; it may have later."""


class Forbidden(ApiError, PermissionDeniedError):
    """403 from RBAC: the message names the verb and resource the Role must grant."""

    def __init__(self, what: str, verb: str, resource: str, message: str = "") -> None:
        self.verb = verb
        self.resource = resource
        super().__init__(what, 403, message)

    template = (
        "{what} was forbidden (403): the operator's identity needs the {verb!r} verb on "
        "{resource} in this namespace. Fix: grant it in the Role (see docs/rbac.md)."
    )


class Retryable(ApiError):
    """429 or 5xx: throttling or server-side trouble, worth retrying with backoff."""
