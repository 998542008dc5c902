"""The syntax rules kube-apiserver's validation shares (DNS names, label keys and values) and the
field errors (`Cause`s) it renders, with its messages."""

from __future__ import annotations

import json
import re
from typing import Any

from kpo_async.testing.sim.errors import Cause

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def _q(value: Any) -> str:
    return json.dumps(value)


def invalid_value(field: str, value: Any, msg: str) -> Cause:
    return Cause(field, "FieldValueInvalid", f"Invalid value: {_q(value)}: {msg}", value, True)


def required(field: str, msg: str = "") -> Cause:
    return Cause(field, "FieldValueRequired", "Required value" + (f": {msg}" if msg else ""))


def duplicate(field: str, value: Any) -> Cause:
    return Cause(field, "FieldValueDuplicate", f"Duplicate value: {_q(value)}", value, True)


def not_found(field: str, value: Any) -> Cause:
    return Cause(field, "FieldValueNotFound", f"Not found: {_q(value)}", value, True)


def unsupported(field: str, value: Any, supported: list[str]) -> Cause:
    vals = ", ".join(f'"{s}"' for s in supported)
    return Cause(field, "FieldValueNotSupported", f"Unsupported value: {_q(value)}: supported values: {vals}")


def dns_label_errors(value: str) -> list[str]:
    """What kube-apiserver says of a value that must be an RFC 1123 label (hostname, subdomain...)."""
    errors = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not DNS1123_LABEL.match(value):
        errors.append("must not contain dots" if DNS1123_SUBDOMAIN.match(value) else LABEL_MSG)
    return errors


def dns_subdomain_errors(value: str) -> list[str]:
    errors = ["must be no more than 253 characters"] if len(value) > 253 else []
    if not DNS1123_SUBDOMAIN.match(value):
        errors.append(SUBDOMAIN_MSG)
    return errors


def qualified_name_errors(key: str) -> list[str]:
    """A label key, annotation key or resource name: an optional DNS-subdomain prefix and a name."""
    parts = key.split("/")
    name = parts[-1]
    if len(parts) > 2:
        return ["a qualified name " + QUALIFIED_MSG]
    errors: list[str] = []
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif not DNS1123_SUBDOMAIN.match(prefix) or len(prefix) > 253:
            errors.append("prefix part " + SUBDOMAIN_MSG)
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME.match(name):
        errors.append(QUALIFIED_MSG)
    return errors


def validate_qualified_key(field: str, key: str) -> list[Cause]:
    return [invalid_value(field, key, msg) for msg in qualified_name_errors(key)]


def validate_labels(labels: Any, field: str, causes: list[Cause]) -> None:
    """A map of label keys to label values (metadata.labels, spec.nodeSelector)."""
    if not isinstance(labels, dict):
        causes.append(invalid_value(field, labels, "must be a map"))
        return
    for key, value in labels.items():
        causes.extend(validate_qualified_key(field, str(key)))
        if not isinstance(value, str):
            causes.append(invalid_value(field, value, "must be a string"))
        elif len(value) > 63:
            causes.append(invalid_value(field, value, "must be no more than 63 characters"))
        elif not _LABEL_VALUE.match(value):
            causes.append(invalid_value(field, value, _LABEL_VALUE_MSG))
