"""Discovery documents kubectl and client-go need: /version, /api, /api/v1, /apis, /openapi/*."""

from __future__ import annotations

from typing import Any

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-kpo-async-sim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_RW = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _res(name: str, kind: str, namespaced: bool, verbs: list[str], **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": name,
        "singularName": extra.pop("singular", ""),
        "namespaced": namespaced,
        "kind": kind,
        "verbs": verbs,
    }
    d.update(extra)
    return d


def api_resource_list() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            _res(
                "events",
                "Event",
                True,
                _RW,
                singular="event",
                shortNames=["ev"],
                storageVersionHash="r2yiGXH7wu8=",
            ),
            _res(
                "namespaces",
                "Namespace",
                False,
                ["create", "delete", "get", "list", "patch", "update", "watch"],
                singular="namespace",
                shortNames=["ns"],
                storageVersionHash="Q3oi5N2YM8M=",
            ),
            _res(
                "nodes",
                "Node",
                False,
                ["get", "list", "watch"],
                singular="node",
                shortNames=["no"],
                storageVersionHash="XwShjMxG9Fs=",
            ),
            _res(
                "pods",
                "Pod",
                True,
                _RW,
                singular="pod",
                shortNames=["po"],
                categories=["all"],
                storageVersionHash="xPOwRZ+Yhw8=",
            ),
            _res("configmaps", "ConfigMap", True, _RW, singular="configmap", shortNames=["cm"]),
            _res(
                "persistentvolumeclaims",
                "PersistentVolumeClaim",
                True,
                _RW,
                singular="persistentvolumeclaim",
                shortNames=["pvc"],
            ),
            _res(
                "resourcequotas",
                "ResourceQuota",
                True,
                _RW,
                singular="resourcequota",
                shortNames=["quota"],
                storageVersionHash="8uhSgffRX6w=",
            ),
            _res("resourcequotas/status", "ResourceQuota", True, ["get"]),
            _res("secrets", "Secret", True, _RW, singular="secret"),
            _res(
                "serviceaccounts", "ServiceAccount", True, _RW, singular="serviceaccount", shortNames=["sa"]
            ),
            _res("pods/eviction", "Eviction", True, ["create"], group="policy", version="v1"),
            _res("pods/exec", "PodExecOptions", True, ["create", "get"]),
            _res("pods/log", "Pod", True, ["get"]),
            _res("pods/status", "Pod", True, ["get", "patch", "update"]),
        ],
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


_SCHEDULING_VERSION = {"groupVersion": "scheduling.k8s.io/v1", "version": "v1"}


def api_group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "scheduling.k8s.io",
                "versions": [_SCHEDULING_VERSION],
                "preferredVersion": _SCHEDULING_VERSION,
            }
        ],
    }


def scheduling_resource_list() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "scheduling.k8s.io/v1",
        "resources": [
            _res("priorityclasses", "PriorityClass", False, _RW, singular="priorityclass", shortNames=["pc"])
        ],
    }


#: (group, resource, kind, namespaced) of everything the simulator creates, as the OpenAPI v3
#: document lists them.
_SERVED_KINDS = (
    ("", "pods", "Pod", True),
    ("", "events", "Event", True),
    ("", "namespaces", "Namespace", False),
    ("", "secrets", "Secret", True),
    ("", "configmaps", "ConfigMap", True),
    ("", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    ("", "serviceaccounts", "ServiceAccount", True),
    ("", "resourcequotas", "ResourceQuota", True),
    ("scheduling.k8s.io", "priorityclasses", "PriorityClass", False),
)


def _group_path(group: str) -> str:
    return f"apis/{group}/v1" if group else "api/v1"


def openapi_v3_root() -> dict[str, Any]:
    groups = sorted({group for group, *_ in _SERVED_KINDS})
    return {
        "paths": {
            _group_path(g): {"serverRelativeURL": f"/openapi/v3/{_group_path(g)}?hash=kpoasyncsim"}
            for g in groups
        }
    }


def _op(op_id: str, params: list[str], group: str, kind: str) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "parameters": [{"name": p, "in": "query", "schema": {"type": "string"}} for p in params],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-group-version-kind": {"group": group, "version": "v1", "kind": kind},
    }


def openapi_v3_group(group: str) -> dict[str, Any] | None:
    """The paths of one group's objects, their operations tagged with their kind.

    kubectl reads it to learn that the server validates fields itself (every write accepts
    ``fieldValidation``); it then skips its client-side schema validation, which would need the
    OpenAPI v2 schemas the simulator does not serve.
    """
    kinds = [(resource, kind, namespaced) for g, resource, kind, namespaced in _SERVED_KINDS if g == group]
    if not kinds:
        return None
    write = ["dryRun", "fieldManager", "fieldValidation", "pretty"]
    prefix = "/" + _group_path(group)
    paths: dict[str, Any] = {}
    for resource, kind, namespaced in kinds:
        scope = "Namespaced" if namespaced else ""
        collection = f"{prefix}/namespaces/{{namespace}}/{resource}" if namespaced else f"{prefix}/{resource}"
        paths[collection] = {
            "get": _op(f"list{scope}{kind}", ["labelSelector", "fieldSelector", "watch"], group, kind),
            "post": _op(f"create{scope}{kind}", write, group, kind),
        }
        paths[collection + "/{name}"] = {
            "get": _op(f"read{scope}{kind}", [], group, kind),
            "put": _op(f"replace{scope}{kind}", write, group, kind),
            "patch": _op(f"patch{scope}{kind}", [*write, "force"], group, kind),
            "delete": _op(f"delete{scope}{kind}", ["gracePeriodSeconds", "dryRun"], group, kind),
        }
    title = f"Kubernetes {group or 'core'} v1 (kpo-async sim)"
    return {
        "openapi": "3.0.0",
        "info": {"title": title, "version": VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }
