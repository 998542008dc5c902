"""Read and check pod templates (``pod_template_file`` / ``pod_template_dict``) into API JSON dicts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import yaml

from kpo_async.errors import InvalidArgumentError
from kpo_async.k8s_objects import checked_api_dict

_FILE = "pod_template_file"
_DICT = "pod_template_dict"
_UNREADABLE = {
    FileNotFoundError: "does not exist",
    IsADirectoryError: "is a directory",
    PermissionError: "is not readable by the worker's user",
    UnicodeDecodeError: "is not UTF-8 text",
}


def read_pod_template(path: str) -> dict[str, Any]:
    """Read and parse a pod template file (blocking: call it on the worker, not in the triggerer)."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        known = _UNREADABLE.get(type(exc))
        problem = known if known and isinstance(exc, OSError) else f"{known or 'cannot be read'} ({exc})"
        raise InvalidArgumentError(
            _FILE,
            f"{path!r} {problem}",
            "pass the path of a YAML or JSON Pod manifest that exists on the worker",
        ) from None
    return parse_pod_template(text, source=path)


def parse_pod_template(text: str, *, source: str) -> dict[str, Any]:
    """Parse a YAML or JSON Pod manifest; ``source`` (its path) is quoted in error messages."""
    if text.lstrip().startswith("{"):
        with contextlib.suppress(json.JSONDecodeError):  # JSON may indent with tabs, which YAML refuses
            return _checked(json.loads(text), argument=_FILE, source=source)
    try:
        return _checked(yaml.safe_load(text), argument=_FILE, source=source)
    except yaml.YAMLError as exc:
        if "single document" in (getattr(exc, "context", None) or ""):
            raise InvalidArgumentError(
                _FILE, f"{source} holds several YAML documents", "keep only the Pod in the file"
            ) from None
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = f"{where}{getattr(exc, 'problem', None) or exc}"
    raise InvalidArgumentError(
        _FILE, f"{source} is not valid YAML or JSON ({problem})", "correct the syntax at that position"
    )


def pod_template_from_dict(d: Mapping[str, Any], source: str = _DICT) -> dict[str, Any]:
    """Check a pod template given as a dict (``pod_template_dict``); returns it as API JSON."""
    return _checked(d, argument=_DICT, source=source)


def _checked(data: Any, *, argument: str, source: str) -> dict[str, Any]:
    fix = "use a Pod manifest: apiVersion: v1, kind: Pod, spec.containers with at least one named container"
    if not isinstance(data, Mapping):
        problem = "is empty" if data is None else f"holds a {type(data).__name__}, not a Pod"
        raise InvalidArgumentError(argument, f"{source} {problem}", fix)
    if data.get("kind", "Pod") != "Pod":
        raise InvalidArgumentError(
            argument,
            f"{source} is a {data['kind']}, not a Pod",
            "copy the pod part (for a Deployment or Job: spec.template) into a manifest with kind: Pod",
        )
    spec = data.get("spec")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("containers"), list):
        raise InvalidArgumentError(argument, f"{source} has no spec.containers list", fix)
    return dict(checked_api_dict(data, "V1Pod", argument=argument, where=source))
