"""PATCH bodies: JSON merge patch, strategic merge patch (as merge patch) and JSON patch."""

from __future__ import annotations

import copy
from typing import Any

from kpo_async.testing.sim.errors import ApiError, bad_request

MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
JSON_PATCH = "application/json-patch+json"
_DELETE_FROM_LIST = "$deleteFromPrimitiveList/"


def merge_patch(target: Any, patch: Any, strategic: bool = False) -> Any:
    """RFC 7386. Of the strategic-merge directives only `$deleteFromPrimitiveList/<list>` is
    applied (how a finalizer is removed); the others ($patch, $retainKeys...) are dropped."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        field = key[len(_DELETE_FROM_LIST) :] if key.startswith(_DELETE_FROM_LIST) else None
        if strategic and field and isinstance(result.get(field), list) and isinstance(value, list):
            result[field] = [item for item in result[field] if item not in value]
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, strategic)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, list):
            cur = cur[int(p)]
        elif isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            raise ApiError(
                422,
                f"the server rejected our request due to an error in our request: path {p!r} not found",
                "Invalid",
            )
    return cur


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        if not parts:
            raise bad_request("cannot patch the root document")
        parent, last = _parent(doc, parts), parts[-1]
        if kind in ("add", "replace"):
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(idx, op.get("value"))
                else:
                    parent[idx] = op.get("value")
            else:
                if kind == "replace" and last not in parent:
                    raise ApiError(
                        422,
                        f"replace operation does not apply: doc is missing key: {op.get('path')}",
                        "Invalid",
                    )
                parent[last] = op.get("value")
        elif kind == "remove":
            try:
                if isinstance(parent, list):
                    del parent[int(last)]
                else:
                    del parent[last]
            except (KeyError, IndexError) as e:
                raise ApiError(
                    422, f"remove operation does not apply: doc is missing path: {op.get('path')}", "Invalid"
                ) from e
        elif kind == "test":
            value = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if value != op.get("value"):
                raise ApiError(422, f"testing value {op.get('path')} failed", "Invalid")
        else:
            raise bad_request(f"unsupported json patch operation {kind!r}")
    return doc


def apply_patch(doc: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    if content_type in MERGE_TYPES:
        if not isinstance(patch, dict):
            raise bad_request("merge patch must be a JSON object")
        return merge_patch(doc, patch, strategic=content_type == MERGE_TYPES[1])
    if content_type == JSON_PATCH:
        return json_patch(doc, patch)
    raise ApiError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: {JSON_PATCH}, "
        "application/merge-patch+json, application/strategic-merge-patch+json",
        "UnsupportedMediaType",
    )
