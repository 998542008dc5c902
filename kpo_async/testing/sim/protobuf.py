"""Request bodies in Kubernetes' protobuf encoding, for the objects kubectl's typed commands send.

``kubectl create namespace|configmap|secret|serviceaccount|priorityclass|quota`` post their object as
``application/vnd.kubernetes.protobuf`` (kube-apiserver accepts it; client-go does not fall back
to JSON on a 415). The body is the 4-byte magic ``k8s\\0`` and a ``runtime.Unknown`` envelope:
field 1 the TypeMeta (apiVersion, kind), field 2 the object's own protobuf message. Only the
fields of the kinds below are decoded; any other kind is refused with 415, as a server that
does not know the type would.
"""

from __future__ import annotations

import base64
from typing import Any, Union

from kpo_async.testing.sim.errors import ApiError, bad_request

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

#: A field's JSON name and how to read it: a scalar type name, or a nested schema, or
#: ("repeated", type) / ("map", value type).
FieldType = Union[str, "Schema", tuple[str, Any]]
Schema = dict[int, tuple[str, FieldType]]

_OWNER_REFERENCE: Schema = {
    5: ("apiVersion", "string"),
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
_OBJECT_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")),
    13: ("ownerReferences", ("repeated", _OWNER_REFERENCE)),
    14: ("finalizers", ("repeated", "string")),
}
_OBJECT_REFERENCE: Schema = {
    1: ("kind", "string"),
    2: ("namespace", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
}
_LOCAL_OBJECT_REFERENCE: Schema = {1: ("name", "string")}

#: (apiVersion, kind) -> the message's schema (field numbers of k8s.io/api's generated.proto).
KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "Namespace"): {
        1: ("metadata", _OBJECT_META),
        2: ("spec", {1: ("finalizers", ("repeated", "string"))}),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", ("map", "string")),
        3: ("binaryData", ("map", "bytes")),
        4: ("immutable", "bool"),
    },
    ("v1", "Secret"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", ("map", "bytes")),
        3: ("type", "string"),
        4: ("stringData", ("map", "string")),
        5: ("immutable", "bool"),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", _OBJECT_META),
        2: ("secrets", ("repeated", _OBJECT_REFERENCE)),
        3: ("imagePullSecrets", ("repeated", _LOCAL_OBJECT_REFERENCE)),
        4: ("automountServiceAccountToken", "bool"),
    },
    ("scheduling.k8s.io/v1", "PriorityClass"): {
        1: ("metadata", _OBJECT_META),
        2: ("value", "int"),
        3: ("globalDefault", "bool"),
        4: ("description", "string"),
        5: ("preemptionPolicy", "string"),
    },
    ("v1", "ResourceQuota"): {
        1: ("metadata", _OBJECT_META),
        2: ("spec", {1: ("hard", ("map", "quantity")), 2: ("scopes", ("repeated", "string"))}),
    },
}
_TYPE_META: Schema = {1: ("apiVersion", "string"), 2: ("kind", "string")}
_UNKNOWN: Schema = {1: ("typeMeta", _TYPE_META), 2: ("raw", "raw")}


def decode_object(data: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of one of `KINDS`."""
    if not data.startswith(MAGIC):
        raise bad_request("error decoding request body: the protobuf body has no 'k8s\\x00' prefix")
    try:
        envelope = _decode(data[len(MAGIC) :], _UNKNOWN)
        type_meta = envelope.get("typeMeta") or {}
        api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
        schema = KINDS.get((api_version, kind))
        if schema is None:
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types include: "
                f"application/json, application/yaml (this server decodes {MEDIA_TYPE} only for "
                f"{', '.join(k for _, k in KINDS)}, not {kind or 'this object'})",
                "UnsupportedMediaType",
            )
        body = _decode(envelope.get("raw", b""), schema)
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"error decoding request body: malformed protobuf ({exc})") from exc
    return {"apiVersion": api_version, "kind": kind, **body}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: an int for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire in (1, 5):  # fixed64 / fixed32: no field we read uses them
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _scalar(kind: str, value: int | bytes) -> Any:
    if kind == "string":
        return value.decode() if isinstance(value, bytes) else str(value)
    if kind == "raw":
        return value if isinstance(value, bytes) else b""
    if kind == "bytes":  # JSON carries bytes in base64
        return base64.b64encode(value if isinstance(value, bytes) else b"").decode()
    if kind == "bool":
        return bool(value)
    if kind == "quantity":  # resource.Quantity: a message holding its string as field 1
        text = dict(_fields(value if isinstance(value, bytes) else b"")).get(1, b"")
        return text.decode() if isinstance(text, bytes) else str(text)
    if isinstance(value, bytes):
        raise ValueError("a number was encoded as bytes")
    return value - (1 << 64) if value >= 1 << 63 else value  # int64 two's complement


def _value(kind: FieldType, value: int | bytes) -> Any:
    if isinstance(kind, dict):
        return _decode(value if isinstance(value, bytes) else b"", kind)
    if isinstance(kind, tuple):
        raise ValueError("nested repeated fields are not supported")
    return _scalar(kind, value)


def _decode(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            continue  # a field kubectl does not set on create (status, managedFields ...)
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "map":
            entry_schema: Schema = {1: ("k", "string"), 2: ("v", kind[1])}
            entry = _decode(value if isinstance(value, bytes) else b"", entry_schema)
            out.setdefault(name, {})[entry.get("k", "")] = entry.get("v", "")
        elif isinstance(kind, tuple):
            out.setdefault(name, []).append(_value(kind[1], value))
        elif (decoded := _value(kind, value)) != "":  # proto2 sends unset strings as ""
            out[name] = decoded
    return out
