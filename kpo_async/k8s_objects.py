"""Convert Kubernetes objects to API JSON and back.

Accepted inputs: model objects of the sync ``kubernetes`` client (what DAGs import as
``from kubernetes.client import models as k8s``), model objects of ``kubernetes_asyncio``, and plain dicts.
Dicts are taken as API JSON (camelCase keys, as in a manifest); when the target model is known, keys spelled
like the Python client's attributes (``mount_path``) are renamed to their API name (``mountPath``) too.

Everything is driven by each model's ``openapi_types`` / ``attribute_map``, so the sync client does not need
to be installed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import re
from functools import cache
from typing import Any, cast

from kubernetes_asyncio.client import Configuration, V1Pod
from kubernetes_asyncio.client import models as async_models

from kpo_async.errors import InvalidArgumentError

_LIST_TYPE = re.compile(r"^list\[(.+)\]$")
_DICT_TYPE = re.compile(r"^dict\(([^,]+), (.+)\)$")
_MISSING_FIELD = re.compile(r"Invalid value for `(\w+)`, must not be `None`")
_SCALAR_CHECKS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "str": (str, "a string"),
    "int": (int, "an integer"),
    "float": ((int, float), "a number"),
    "bool": (bool, "true or false"),
}

# Models built here get their own Configuration: the process-wide default may carry cluster credentials,
# and every model keeps a reference to the Configuration it was built with.
_MODEL_CONFIGURATION = Configuration()


@cache
def _model(type_name: str | None) -> tuple[Any, dict[str, tuple[str, str]]] | None:
    """The ``kubernetes_asyncio`` model class of that name, and its fields: API key -> (attribute, type)."""
    cls = getattr(async_models, type_name, None) if type_name else None
    if cls is None or not hasattr(cls, "openapi_types"):
        return None
    return cls, {cls.attribute_map[attr]: (attr, kind) for attr, kind in cls.openapi_types.items()}


def is_model(obj: Any) -> bool:
    """True for a model object of either Kubernetes client (not for the model classes themselves)."""
    return not isinstance(obj, type) and hasattr(obj, "openapi_types") and hasattr(obj, "attribute_map")


def to_api_dict(obj: Any) -> Any:
    """Return ``obj`` (models of either client, dicts, lists) as API JSON: camelCase keys, ``None``
    dropped, datetimes as RFC 3339 strings. Raises ``TypeError`` for values that are not JSON-like."""
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, dt.datetime):  # the API only speaks UTC; a naive datetime is taken as UTC
        obj = obj.replace(tzinfo=obj.tzinfo or dt.timezone.utc).astimezone(dt.timezone.utc)
        return obj.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if obj.microsecond else "%Y-%m-%dT%H:%M:%SZ")
    if is_model(obj):
        obj = {obj.attribute_map[attr]: getattr(obj, attr, None) for attr in obj.openapi_types}
    if isinstance(obj, (list, tuple)):
        return [to_api_dict(item) for item in obj]
    if isinstance(obj, dict):
        return {key: to_api_dict(value) for key, value in obj.items() if value is not None}
    raise TypeError(
        f"cannot use a {type(obj).__name__} as Kubernetes API data "
        "(expected a Kubernetes model object, a dict or a list)"
    )


def to_v1pod(data: dict[str, Any] | Any) -> V1Pod:
    """Deserialize a pod (API JSON dict, or a pod object of either client) into an asyncio ``V1Pod``.

    Keys the model does not know are skipped (`checked_api_dict` reports them). Raises ``ValueError``
    naming the path of a value of the wrong shape.
    """
    return cast(V1Pod, _deserialize(data, "V1Pod", "", None))


def checked_api_dict(value: Any, model: str, *, argument: str, where: str = "") -> Any:
    """``value`` checked against ``model`` (a model's name, or ``list[...]`` of one) and returned as
    API JSON; keys spelled like the Python client's attributes (``mount_path``) are renamed. Raises
    ``InvalidArgumentError``; ``where`` prefixes the problem (e.g. the template's path).
    """
    prefix = f"{where}: " if where else ""
    element = _LIST_TYPE.match(model)
    kind = f"a list of k8s.{element[1]}" if element else f"k8s.{model}"
    fix = f"pass {kind} objects or dicts in Kubernetes API JSON (camelCase keys, as in a manifest)"
    unknown: list[str] = []
    try:
        data = to_api_dict(_deserialize(value, model, "", unknown))
    except (TypeError, ValueError) as exc:
        if not unknown:  # otherwise a misspelt field is the likely cause: report that
            raise InvalidArgumentError(argument, f"{prefix}{exc}", fix) from None
    if unknown:
        raise InvalidArgumentError(argument, f"{prefix}unknown field {', '.join(unknown)}", fix)
    return data


def _deserialize(data: Any, type_name: str, path: str, unknown: list[str] | None) -> Any:
    if data is None:
        return None
    if is_model(data):  # of either client: its fields by their API names
        data = {data.attribute_map[attr]: getattr(data, attr, None) for attr in data.openapi_types}
    if match := _LIST_TYPE.match(type_name):
        if not isinstance(data, (list, tuple)):
            raise ValueError(f"{path or 'value'} must be a list, got {type(data).__name__}")
        items = ((f"{path}[{n}]" if path else f"item {n}", item) for n, item in enumerate(data))
        return [_deserialize(item, match[1], where, unknown) for where, item in items]
    if match := _DICT_TYPE.match(type_name):
        if not isinstance(data, dict):
            raise ValueError(f"{path or 'value'} must be a mapping, got {type(data).__name__}")
        return {key: _deserialize(item, match[2], f"{path}.{key}", unknown) for key, item in data.items()}
    if type_name == "datetime" and isinstance(data, str):
        with contextlib.suppress(ValueError):  # a value that is not one is kept as it is
            return dt.datetime.fromisoformat(data.replace("Z", "+00:00"))
    if type_name in _SCALAR_CHECKS:
        return _scalar(data, type_name, path)
    model = _model(type_name)
    if model is None:  # "object", or a type this client does not have
        return data
    if not isinstance(data, dict):
        raise ValueError(f"{path or 'value'} must be a mapping ({type_name}), got {type(data).__name__}")
    cls, fields = model
    kwargs = {}
    for name, value in data.items():
        key = name if name in fields else cls.attribute_map.get(name, name)  # also `mount_path`
        child = f"{path}.{key}" if path else key
        if key in fields:
            attr, kind = fields[key]
            kwargs[attr] = _deserialize(value, kind, child, unknown)
        elif unknown is not None:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            unknown.append(f"'{key}'{hint}{f' in {path}' if path else ''}")
    try:
        return cls(**kwargs, local_vars_configuration=_MODEL_CONFIGURATION)
    except ValueError as exc:  # the model's own required-field / enum checks
        if missing := _MISSING_FIELD.search(str(exc)):
            field = cls.attribute_map.get(missing[1], missing[1])
            raise ValueError(f"{path or type_name}: required field '{field}' is missing") from None
        raise ValueError(f"{path or type_name}: {exc}") from None


def _scalar(data: Any, type_name: str, path: str) -> Any:
    # YAML turns `value: 8080` into an int; the official provider coerces such scalars, and so do we.
    if type_name == "str" and isinstance(data, (bool, int, float)):
        return str(data).lower() if isinstance(data, bool) else str(data)
    if type_name == "int" and isinstance(data, str) and data.strip().lstrip("-").isdigit():
        return int(data)
    kinds, expected = _SCALAR_CHECKS[type_name]
    if not isinstance(data, kinds):
        raise ValueError(f"{path or 'value'} must be {expected}, got {type(data).__name__} {data!r}")
    return data
