"""Plain objects: Secrets, ConfigMaps, PVCs, ServiceAccounts, PriorityClasses, ResourceQuotas.

They are served with create/get/list/watch/update/patch/delete like pods, with the defaults and
the validation kube-apiserver applies that a pod's behaviour depends on. The kubelet reads them
from the store when it starts a container (kubelet.py), the admission checks in `admit_pod`
reject a pod naming a missing ServiceAccount or PriorityClass as kube-apiserver's admission
plugins do.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kpo_async.testing.sim.errors import (
    ApiError,
    Cause,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from kpo_async.testing.sim.patch import apply_patch
from kpo_async.testing.sim.quota import validate_hard
from kpo_async.testing.sim.store import Store
from kpo_async.testing.sim.util import fmt_time, new_uid
from kpo_async.testing.sim.validation import apply_generate_name, check_body_namespace, validate_metadata

#: The PriorityClasses every cluster has (kube-apiserver creates them at start).
SYSTEM_PRIORITY_CLASSES = {"system-cluster-critical": 2000000000, "system-node-critical": 2000001000}
_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_DATA_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"


@dataclass(frozen=True)
class Kind:
    resource: str
    kind: str
    group: str  # "" for the core group
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    def base_path(self) -> str:
        return f"/apis/{self.group}/v1" if self.group else "/api/v1"


KINDS = {
    k.resource: k
    for k in (
        Kind("secrets", "Secret", "", True),
        Kind("configmaps", "ConfigMap", "", True),
        Kind("persistentvolumeclaims", "PersistentVolumeClaim", "", True),
        Kind("serviceaccounts", "ServiceAccount", "", True),
        Kind("resourcequotas", "ResourceQuota", "", True),
        Kind("priorityclasses", "PriorityClass", "scheduling.k8s.io", False),
    )
}


def _check_keys(body: dict[str, Any], field: str, causes: list[Cause]) -> None:
    for key in body.get(field) or {}:
        if not _DATA_KEY.match(str(key)) or len(str(key)) > 253:
            causes.append(
                Cause(f"{field}[{key}]", "FieldValueInvalid", f'Invalid value: "{key}": {_DATA_KEY_MSG}')
            )


def _prepare_secret(body: dict[str, Any], causes: list[Cause]) -> None:
    data = body.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as e:
            # kube-apiserver fails decoding the []byte field before validation
            raise bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data ({key}): {e}'
            ) from e
    for key, value in (body.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        body["data"] = data
    body.setdefault("type", "Opaque")
    _check_keys(body, "data", causes)


def _prepare_configmap(body: dict[str, Any], causes: list[Cause]) -> None:
    _check_keys(body, "data", causes)
    _check_keys(body, "binaryData", causes)
    for key in set(body.get("data") or {}) & set(body.get("binaryData") or {}):
        causes.append(
            Cause(
                f"data[{key}]",
                "FieldValueInvalid",
                f'Invalid value: "{key}": duplicate of key present in binaryData',
            )
        )


def _prepare_pvc(body: dict[str, Any], causes: list[Cause]) -> None:
    spec = body.setdefault("spec", {})
    if not spec.get("accessModes"):
        causes.append(
            Cause(
                "spec.accessModes", "FieldValueRequired", "Required value: at least 1 access mode is required"
            )
        )
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if not storage:
        causes.append(Cause("spec.resources[storage]", "FieldValueRequired", "Required value"))
    spec.setdefault("volumeMode", "Filesystem")
    # The simulated node provisions at once (like a default StorageClass with Immediate binding).
    spec.setdefault("storageClassName", "standard")
    body["status"] = {
        "phase": "Bound",
        "accessModes": spec.get("accessModes") or [],
        "capacity": {"storage": storage} if storage else {},
    }


def _prepare_priority_class(body: dict[str, Any], causes: list[Cause]) -> None:
    value = body.get("value")
    if value is None:
        causes.append(Cause("value", "FieldValueRequired", "Required value"))
    elif not isinstance(value, int) or (
        value > 1000000000 and body["metadata"].get("name") not in SYSTEM_PRIORITY_CLASSES
    ):
        causes.append(
            Cause(
                "value",
                "FieldValueForbidden",
                "Forbidden: maximum allowed value of a user defined priority is 1000000000",
            )
        )
    body.setdefault("preemptionPolicy", "PreemptLowerPriority")
    body.setdefault("globalDefault", False)


def _prepare_resource_quota(body: dict[str, Any], causes: list[Cause]) -> None:
    body.setdefault("spec", {})
    body.pop("status", None)  # the quota controller's (quota.py)
    validate_hard(body, causes)


_PREPARE = {
    "secrets": _prepare_secret,
    "configmaps": _prepare_configmap,
    "persistentvolumeclaims": _prepare_pvc,
    "serviceaccounts": lambda body, causes: None,
    "priorityclasses": _prepare_priority_class,
    "resourcequotas": _prepare_resource_quota,
}


def new_object(kind: Kind, body: dict[str, Any], ns: str = "") -> dict[str, Any]:
    """Validate and default a new object; raise the apiserver's 400/422 on bad input."""
    meta = body.setdefault("metadata", {})
    apply_generate_name(meta)
    causes: list[Cause] = []
    validate_metadata(meta, causes)
    _PREPARE[kind.resource](body, causes)
    if causes:
        raise invalid(kind.kind, meta.get("name", ""), causes, kind.group)
    body["kind"], body["apiVersion"] = kind.kind, kind.api_version
    if kind.namespaced:
        meta["namespace"] = ns
    else:
        meta.pop("namespace", None)
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = fmt_time()
    for key in ("resourceVersion", "deletionTimestamp", "selfLink"):
        meta.pop(key, None)
    return body


def system_objects(namespaces: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """What a fresh cluster holds: the `default` ServiceAccount per namespace, system PriorityClasses."""
    out = [("serviceaccounts", default_service_account(ns)) for ns in namespaces]
    for name, value in SYSTEM_PRIORITY_CLASSES.items():
        body = {"metadata": {"name": name}, "value": value, "description": "system priority class"}
        out.append(("priorityclasses", new_object(KINDS["priorityclasses"], body)))
    return out


def default_service_account(ns: str) -> dict[str, Any]:
    """What the service-account controller creates in each namespace."""
    return new_object(KINDS["serviceaccounts"], {"metadata": {"name": "default"}}, ns)


def admit_pod(store: Store, pod: dict[str, Any], ns: str) -> None:
    """The ServiceAccount and Priority admission plugins: a pod naming a missing one is refused."""
    spec = pod.get("spec") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if store.get("serviceaccounts", ns, sa) is None:
        raise ApiError(
            403,
            f'pods "{name}" is forbidden: error looking up service account {ns}/{sa}: '
            f'serviceaccount "{sa}" not found',
            "Forbidden",
            {"name": name, "kind": "pods"},
        )
    _admit_priority(store, spec, name)


def _default_priority_class(store: Store) -> dict[str, Any] | None:
    """The `globalDefault` PriorityClass with the highest value, if any."""
    defaults = [o.body for o in store.list("priorityclasses") if o.body and o.body.get("globalDefault")]
    return max(defaults, key=lambda pc: pc.get("value", 0), default=None)


def _admit_priority(store: Store, spec: dict[str, Any], name: str) -> None:
    """The Priority admission plugin: the class (named, or the global default) sets priority and
    preemptionPolicy; a pod stating other values, or naming a missing class, is refused."""
    pc_name = spec.get("priorityClassName")
    if pc_name:
        obj = store.get("priorityclasses", "", pc_name)
        if obj is None:
            raise _forbidden(name, f"no PriorityClass with name {pc_name} was found")
        pc: dict[str, Any] | None = obj.body
    else:
        pc = _default_priority_class(store)
        if pc is not None:
            spec["priorityClassName"] = pc["metadata"]["name"]
    value = pc.get("value", 0) if pc else 0
    policy = pc.get("preemptionPolicy", "PreemptLowerPriority") if pc else "PreemptLowerPriority"
    if spec.get("priority") is not None and spec["priority"] != value:
        raise _forbidden(
            name,
            f"the integer value of priority ({spec['priority']}) must not be provided in pod spec; "
            f"priority admission controller computed {value} from the given PriorityClass name",
        )
    if spec.get("preemptionPolicy") is not None and spec["preemptionPolicy"] != policy:
        raise _forbidden(
            name,
            f"the string value of PreemptionPolicy ({spec['preemptionPolicy']}) must not be provided in "
            f"pod spec; priority admission controller computed {policy} from the given PriorityClass name",
        )
    spec["priority"], spec["preemptionPolicy"] = value, policy


def _forbidden(name: str, message: str) -> ApiError:
    return ApiError(
        403, f'pods "{name}" is forbidden: {message}', "Forbidden", {"name": name, "kind": "pods"}
    )


class ObjectsApi:
    """Routes for the kinds in KINDS; list/watch reuse the pods' code path (`list_or_watch`)."""

    def __init__(self, store: Store, list_or_watch: Any, render: Any, require_namespace: Any) -> None:
        self.store = store
        self._list_or_watch = list_or_watch
        self._render = render
        self._require_namespace = require_namespace

    def routes(self) -> list[web.RouteDef]:
        out: list[web.RouteDef] = []
        for kind in KINDS.values():
            base = kind.base_path()
            coll = (
                f"{base}/namespaces/{{ns}}/{kind.resource}" if kind.namespaced else f"{base}/{kind.resource}"
            )
            watch = (
                f"{base}/watch/namespaces/{{ns}}/{kind.resource}"
                if kind.namespaced
                else f"{base}/watch/{kind.resource}"
            )
            one = coll + "/{name}"
            out += [
                web.get(coll, self._handler(kind, "list")),
                web.get(watch, self._handler(kind, "watch")),
                web.post(coll, self._handler(kind, "create")),
                web.get(one, self._handler(kind, "get")),
                web.put(one, self._handler(kind, "replace")),
                web.patch(one, self._handler(kind, "patch")),
                web.delete(one, self._handler(kind, "delete")),
            ]
            if kind.namespaced:
                out += [
                    web.get(f"{base}/{kind.resource}", self._handler(kind, "list_all")),
                    web.get(f"{base}/watch/{kind.resource}", self._handler(kind, "watch_all")),
                ]
        return out

    def _handler(self, kind: Kind, action: str) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            ns = request.match_info.get("ns", "")
            if action in ("list", "watch", "list_all", "watch_all"):
                where = None if action.endswith("_all") or not kind.namespaced else ns
                return await self._list_or_watch(request, kind.resource, where, action.startswith("watch"))
            if action == "create":
                return await self._create(request, kind, ns)
            name = request.match_info["name"]
            obj = self.store.get(kind.resource, ns, name)
            if obj is None:
                raise not_found(kind.resource, name, kind.group)
            if action == "get":
                return self._render(request, obj)
            if action == "delete":
                final = self.store.delete(kind.resource, ns, name)
                assert final is not None
                return _json(final.full())
            assert obj.body is not None
            new = await _read_json(request)
            if action == "patch":
                new = apply_patch(copy.deepcopy(obj.body), new, request.content_type)
            return self._update(kind, obj.body, new)

        return handle

    async def _create(self, request: web.Request, kind: Kind, ns: str) -> web.Response:
        body = await _read_json(request)
        if body.get("kind") not in (None, kind.kind):
            raise bad_request(
                f"the kind of the object ({body.get('kind')}) does not match the resource ({kind.resource})"
            )
        if kind.namespaced:
            check_body_namespace(body, ns)
            self._require_namespace(ns)
        body = new_object(kind, body, ns)
        name = body["metadata"]["name"]
        if self.store.get(kind.resource, ns, name) is not None:
            raise already_exists(kind.resource if not kind.group else f"{kind.resource}.{kind.group}", name)
        if request.query.get("dryRun"):
            return _json(body, 201)
        return _json(self.store.create(kind.resource, body).full(), 201)

    def _update(self, kind: Kind, old: dict[str, Any], new: dict[str, Any]) -> web.Response:
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        name = old_meta["name"]
        expected = meta.get("resourceVersion")
        if expected and expected != old_meta["resourceVersion"]:
            raise conflict(kind.resource, name)
        if meta.get("name", name) != name:
            raise invalid(
                kind.kind,
                name,
                [Cause("metadata.name", "FieldValueInvalid", "Invalid value: field is immutable")],
            )
        for key in ("name", "namespace", "uid", "creationTimestamp"):
            if key in old_meta:
                meta[key] = old_meta[key]
        causes: list[Cause] = []
        validate_metadata(meta, causes)
        _PREPARE[kind.resource](new, causes)
        if kind.resource == "priorityclasses" and new.get("value") != old.get("value"):
            causes.append(
                Cause("value", "FieldValueForbidden", "Forbidden: may not be changed in an update.")
            )
        if causes:
            raise invalid(kind.kind, name, causes, kind.group)
        if kind.resource == "resourcequotas" and "status" in old:
            new["status"] = old["status"]
        new["kind"], new["apiVersion"] = kind.kind, kind.api_version
        return _json(self.store.update(kind.resource, new).full())


async def _read_json(request: web.Request) -> dict[str, Any]:
    from kpo_async.testing.sim.api import read_body

    body = await read_body(request)
    if not isinstance(body, dict):
        raise bad_request("the body of the request must be an object")
    return body


def _json(body: Any, status: int = 200) -> web.Response:
    from kpo_async.testing.sim.httpio import json_response

    return json_response(body, status)
