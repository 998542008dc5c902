"""Kubernetes `Status` error bodies, raised as `ApiError` and rendered by the API layer."""

from __future__ import annotations

from typing import Any

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

_DEFAULT_MESSAGES = {
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected by kpo-async sim",
    502: "Bad Gateway",
    503: "The server is currently unable to handle the request",
    504: (
        "The server was unable to return a response in the time allotted, "
        "but may still be processing the request"
    ),
}


def status_body(
    code: int,
    message: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    reason = reason if reason is not None else _REASONS.get(code, "")
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = details
    body["code"] = code
    return body


class ApiError(Exception):
    """An error answered as a Kubernetes Status object."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return status_body(self.code, self.message, self.reason, self.details)


def default_message(code: int) -> str:
    return _DEFAULT_MESSAGES.get(code, f"injected error {code}")


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    details: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return ApiError(404, f'{qualified} "{name}" not found', "NotFound", details)


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(
        409, f'{resource} "{name}" already exists', "AlreadyExists", {"name": name, "kind": resource}
    )


def conflict(resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        "Conflict",
        {"name": name, "kind": resource},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, message, "MethodNotAllowed")


class Cause:
    """One field error of a 422 Invalid (what field.Error renders)."""

    def __init__(
        self, field: str, kind: str, message: str, value: Any = None, has_value: bool = False
    ) -> None:
        self.field = field
        self.kind = kind  # FieldValueInvalid, FieldValueRequired, FieldValueDuplicate, ...
        self.message = message
        self.value = value
        self.has_value = has_value

    def detail(self) -> str:
        return self.message

    def full(self) -> str:
        return f"{self.field}: {self.message}"


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> ApiError:
    lines = list(dict.fromkeys(c.full() for c in causes))  # the message lists each error once
    summary = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [{"reason": c.kind, "message": c.detail(), "field": c.field} for c in causes],
    }
    if group:
        details["group"] = group
    return ApiError(422, f'{kind} "{name}" is invalid: {summary}', "Invalid", details)
