"""Pod spec validation beyond names: what kube-apiserver 1.36 refuses with a 422, cause by cause,
what it accepts, and `fieldValidation=Strict`'s 400 for unknown fields."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .conftest import pod_manifest

LABEL = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"
SUBDOMAIN = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"


def with_container(**fields: Any) -> dict[str, Any]:
    manifest = pod_manifest("p", "true")
    manifest["spec"]["containers"][0].update(fields)
    return manifest


async def refused(
    v1: client.CoreV1Api, manifest: dict[str, Any], **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ApiException) as e:
        await v1.create_namespaced_pod("default", manifest, **kwargs)
    return e.value.status, json.loads(e.value.body)


def causes(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["field"], c["reason"], c["message"]) for c in body["details"]["causes"]]


C0 = "spec.containers[0]"
INVALID, UNSUPPORTED, REQUIRED = "FieldValueInvalid", "FieldValueNotSupported", "FieldValueRequired"
PORT_RANGE = "must be between 1 and 65535, inclusive"
GPU = {"nvidia.com/gpu": "1"}

CASES: dict[str, tuple[dict[str, Any], list[tuple[str, str, str]]]] = {
    "node-selector-value": (
        pod_manifest("p", "true", nodeSelector={"disk": "s s d"}),
        [("spec.nodeSelector", INVALID, 'Invalid value: "s s d": a valid label must be')],
    ),
    "node-selector-key": (
        pod_manifest("p", "true", nodeSelector={"-disk": "ssd"}),
        [("spec.nodeSelector", INVALID, 'Invalid value: "-disk": name part must consist')],
    ),
    "container-port": (
        with_container(ports=[{"containerPort": 70000}]),
        [(f"{C0}.ports[0].containerPort", INVALID, f"Invalid value: 70000: {PORT_RANGE}")],
    ),
    "port-name-host-port-protocol": (
        with_container(ports=[{"containerPort": 80, "hostPort": 70000, "name": "a--1", "protocol": "tcp"}]),
        [
            (f"{C0}.ports[0].name", INVALID, 'Invalid value: "a--1": must not contain consecutive hyphens'),
            (f"{C0}.ports[0].hostPort", INVALID, f"Invalid value: 70000: {PORT_RANGE}"),
            (
                f"{C0}.ports[0].protocol",
                UNSUPPORTED,
                'Unsupported value: "tcp": supported values: "SCTP", "TCP"',
            ),
        ],
    ),
    "port-name-duplicate": (
        with_container(ports=[{"containerPort": 80, "name": "web"}, {"containerPort": 81, "name": "web"}]),
        [(f"{C0}.ports[1].name", "FieldValueDuplicate", 'Duplicate value: "web"')],
    ),
    "service-account": (
        pod_manifest("p", "true", serviceAccountName="Bad_SA"),
        [("spec.serviceAccountName", INVALID, f'Invalid value: "Bad_SA": {SUBDOMAIN}')],
    ),
    "hostname-subdomain": (
        pod_manifest("p", "true", hostname="Host_1", subdomain="a.b"),
        [
            ("spec.hostname", INVALID, f'Invalid value: "Host_1": {LABEL}'),
            ("spec.subdomain", INVALID, 'Invalid value: "a.b": must not contain dots'),
        ],
    ),
    "termination-message-policy": (
        with_container(terminationMessagePolicy="Stdout"),
        [
            (
                f"{C0}.terminationMessagePolicy",
                UNSUPPORTED,
                'Unsupported value: "Stdout": supported values: "File", "FallbackToLogsOnError"',
            )
        ],
    ),
    "dns-policy": (
        pod_manifest("p", "true", dnsPolicy="Cluster"),
        [
            (
                "spec.dnsPolicy",
                UNSUPPORTED,
                'Unsupported value: "Cluster": supported values: '
                '"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"',
            )
        ],
    ),
    "dns-none-without-config": (
        pod_manifest("p", "true", dnsPolicy="None"),
        [("spec.dnsConfig", REQUIRED, "Required value: must provide `dnsConfig` when `dnsPolicy` is None")],
    ),
    "active-deadline": (
        pod_manifest("p", "true", activeDeadlineSeconds=0),
        [
            (
                "spec.activeDeadlineSeconds",
                INVALID,
                "Invalid value: 0: must be between 1 and 2147483647, inclusive",
            )
        ],
    ),
    "resource-name": (
        with_container(resources={"limits": {"memroy": "1Gi"}}),
        [
            (
                f"{C0}.resources.limits[memroy]",
                INVALID,
                'Invalid value: "memroy": must be a standard resource type',
            ),
            (
                f"{C0}.resources.limits[memroy]",
                INVALID,
                'Invalid value: "memroy": must be a standard resource for',
            ),
        ],
    ),
    "pod-resource-in-container": (
        with_container(resources={"requests": {"pods": "1"}}),
        [
            (
                f"{C0}.resources.requests[pods]",
                INVALID,
                'Invalid value: "pods": must be a standard resource for',
            )
        ],
    ),
    "extended-resource-fraction": (
        with_container(resources={"limits": {"nvidia.com/gpu": "500m"}}),
        [(f"{C0}.resources.limits[nvidia.com/gpu]", INVALID, "Invalid value: 500m: must be an integer")],
    ),
    "extended-resource-request-not-limit": (
        with_container(resources={"requests": GPU, "limits": {"nvidia.com/gpu": "2"}}),
        [
            (
                f"{C0}.resources.requests",
                INVALID,
                'Invalid value: "1": must be equal to nvidia.com/gpu limit of 2',
            )
        ],
    ),
}


@pytest.mark.parametrize(("manifest", "expected"), CASES.values(), ids=CASES.keys())
async def test_fields_kube_apiserver_refuses(
    v1: client.CoreV1Api, manifest: dict[str, Any], expected: list[tuple[str, str, str]]
) -> None:
    code, body = await refused(v1, manifest)
    assert (code, body["reason"], body["details"]["kind"]) == (422, "Invalid", "Pod")
    got = causes(body)
    assert [(f, r) for f, r, _ in got] == [(f, r) for f, r, _ in expected]
    for (_, _, message), (_, _, start) in zip(got, expected, strict=True):
        assert message.startswith(start), message
    assert body["message"].startswith(
        f'Pod "p" is invalid: {"[" if len(expected) > 1 else ""}{expected[0][0]}: '
    )
    assert (await v1.list_namespaced_pod("default")).items == []


async def test_a_repeated_error_is_one_cause_each_but_said_once(v1: client.CoreV1Api) -> None:
    manifest = with_container(resources={"requests": {"nvidia.com/gpu": "1", "example.com/fpga": "1"}})
    _, body = await refused(v1, manifest)
    required = "Required value: Limit must be set for non overcommitable resources"
    assert causes(body) == [("spec.containers[0].resources.limits", "FieldValueRequired", required)] * 2
    assert body["message"] == f'Pod "p" is invalid: spec.containers[0].resources.limits: {required}'


async def test_values_kube_apiserver_accepts(v1: client.CoreV1Api) -> None:
    manifest = pod_manifest(
        "ok",
        "true",
        nodeSelector={"kubernetes.io/os": "linux", "disk": ""},
        serviceAccountName="default",
        hostname="worker-1",
        subdomain="jobs",
        dnsPolicy="None",
        dnsConfig={"nameservers": ["10.0.0.10"]},
        activeDeadlineSeconds=600,
    )
    manifest["spec"]["containers"][0].update(
        terminationMessagePolicy="FallbackToLogsOnError",
        ports=[
            {"containerPort": 8080, "name": "http"},
            {"containerPort": 53, "protocol": "UDP", "hostPort": 53},
        ],
        resources={
            "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1", "hugepages-2Mi": "4Mi"},
            "requests": {"cpu": "500m", "nvidia.com/gpu": "1", "hugepages-2Mi": "4Mi"},
        },
    )
    created = await v1.create_namespaced_pod("default", manifest)
    assert created.spec.hostname == "worker-1" and created.spec.dns_policy == "None"
    assert created.spec.containers[0].ports[0].container_port == 8080


async def test_strict_field_validation_refuses_unknown_fields(v1: client.CoreV1Api) -> None:
    manifest = pod_manifest("typo", "true", restartPolicyy="Never")
    manifest["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    manifest["metadata"]["lables"] = {"a": "b"}
    code, body = await refused(v1, manifest, field_validation="Strict")
    assert code == 400 and body["reason"] == "BadRequest"
    assert body["message"] == (
        'Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
        'unknown field "metadata.lables", unknown field "spec.containers[0].imagePullPolicyy", '
        'unknown field "spec.restartPolicyy"'
    )
    assert "details" not in body
    assert (await v1.list_namespaced_pod("default")).items == []


async def test_unknown_fields_pass_without_strict_validation(v1: client.CoreV1Api) -> None:
    manifest = pod_manifest("lenient", "true", restartPolicyy="Never")
    await v1.create_namespaced_pod("default", manifest, field_validation="Warn")
    await v1.create_namespaced_pod("default", pod_manifest("known", "true"), field_validation="Strict")
    names = {p.metadata.name for p in (await v1.list_namespaced_pod("default")).items}
    assert names == {"lenient", "known"}


async def test_strict_field_validation_on_replace(v1: client.CoreV1Api) -> None:
    unschedulable = pod_manifest("kept", "true", nodeSelector={"disktype": "none"})  # its spec stays put
    created = await v1.create_namespaced_pod("default", unschedulable, _preload_content=False)
    body = json.loads(await created.read())
    del body["metadata"]["resourceVersion"]  # an unconditional update: its status changes meanwhile
    body["metadata"]["labelz"] = {"a": "b"}
    with pytest.raises(ApiException) as e:
        await v1.replace_namespaced_pod("kept", "default", body, field_validation="Strict")
    assert e.value.status == 400
    assert json.loads(e.value.body)["message"].endswith(
        'strict decoding error: unknown field "metadata.labelz"'
    )
    del body["metadata"]["labelz"]
    body["metadata"]["labels"] = {"a": "b"}
    replaced = await v1.replace_namespaced_pod("kept", "default", body, field_validation="Strict")
    assert replaced.metadata.labels == {"a": "b"}
