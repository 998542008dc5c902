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


def openapi_v3_root() -> dict[str, Any]:
    return {"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=kpoasyncsim"}}}


def _op(op_id: str, params: list[str], kind: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "parameters": [{"name": p, "in": "query", "schema": {"type": "string"}} for p in params],
        "responses": {"200": {"description": "OK"}},
    }
    if kind:
        op["x-kubernetes-group-version-kind"] = {"group": "", "version": "v1", "kind": kind}
    return op


def openapi_v3_core() -> dict[str, Any]:
    """Just enough for kubectl's field-validation probe (it checks `fieldValidation` is accepted)."""
    write = ["dryRun", "fieldManager", "fieldValidation", "pretty"]
    paths: dict[str, Any] = {}
    for res, kind in (("pods", "Pod"), ("events", "Event")):
        paths[f"/api/v1/namespaces/{{namespace}}/{res}"] = {
            "get": _op(f"listCoreV1Namespaced{kind}", ["labelSelector", "fieldSelector", "watch"], kind),
            "post": _op(f"createCoreV1Namespaced{kind}", write, kind),
        }
        paths[f"/api/v1/namespaces/{{namespace}}/{res}/{{name}}"] = {
            "get": _op(f"readCoreV1Namespaced{kind}", [], kind),
            "put": _op(f"replaceCoreV1Namespaced{kind}", write, kind),
            "patch": _op(f"patchCoreV1Namespaced{kind}", [*write, "force"], kind),
            "delete": _op(f"deleteCoreV1Namespaced{kind}", ["gracePeriodSeconds", "dryRun"], kind),
        }
    paths["/api/v1/namespaces"] = {
        "post": _op("createCoreV1Namespace", write),
        "get": _op("listCoreV1Namespace", []),
    }
    paths["/api/v1/namespaces/{name}"] = {"patch": _op("patchCoreV1Namespace", [*write, "force"])}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kpo-async sim)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }
