"""Secrets, ConfigMaps, PVCs, ServiceAccounts and PriorityClasses: served, admitted, used by pods."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from .conftest import cstatus, pod_manifest, raw_request, wait_for, wait_phase


async def _events(v1: client.CoreV1Api, pod: str) -> list[tuple[str, str]]:
    evs = await v1.list_namespaced_event("default", field_selector=f"involvedObject.name={pod}")
    return [(e.reason, e.message) for e in evs.items]


async def _log(v1: client.CoreV1Api, pod: str) -> str:
    return await v1.read_namespaced_pod_log(pod, "default", container="base")


def _status_of(e: ApiException) -> dict[str, Any]:
    return json.loads(e.body)


async def test_crud_and_watch_of_each_kind(api: client.ApiClient, v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_secret("default", {"metadata": {"name": "s1"}, "stringData": {"k": "v"}})
    secret = await v1.read_namespaced_secret("s1", "default")
    assert secret.data == {"k": "dg=="} and secret.type == "Opaque" and secret.string_data is None
    await v1.create_namespaced_config_map("default", {"metadata": {"name": "c1"}, "data": {"a": "1"}})
    patched = await v1.patch_namespaced_config_map("c1", "default", {"data": {"b": "2"}})
    assert patched.data == {"a": "1", "b": "2"}
    names = [c.metadata.name for c in (await v1.list_namespaced_config_map("default")).items]
    assert names == ["c1"]
    await v1.create_namespaced_persistent_volume_claim(
        "default",
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    pvc = await v1.read_namespaced_persistent_volume_claim("data", "default")
    assert pvc.status.phase == "Bound" and pvc.spec.volume_mode == "Filesystem"
    sas = {s.metadata.name for s in (await v1.list_namespaced_service_account("default")).items}
    assert sas == {"default"}  # the service-account controller's account, in every namespace
    await v1.create_namespace({"metadata": {"name": "team-a"}})
    assert (await v1.read_namespaced_service_account("default", "team-a")).metadata.name == "default"

    sched = client.SchedulingV1Api(api)
    await sched.create_priority_class({"metadata": {"name": "high"}, "value": 1000})
    pcs = {p.metadata.name: p.value for p in (await sched.list_priority_class()).items}
    assert pcs["high"] == 1000 and pcs["system-cluster-critical"] == 2000000000
    try:
        await sched.read_priority_class("nope")
        raise AssertionError("expected 404")
    except ApiException as e:
        assert e.status == 404
        assert _status_of(e)["message"] == 'priorityclasses.scheduling.k8s.io "nope" not found'
    try:
        await v1.create_namespaced_config_map("default", {"metadata": {"name": "c1"}})
        raise AssertionError("expected 409")
    except ApiException as e:
        assert e.status == 409 and _status_of(e)["message"] == 'configmaps "c1" already exists'
    try:
        await v1.create_namespaced_persistent_volume_claim(
            "default", {"metadata": {"name": "bad"}, "spec": {}}
        )
        raise AssertionError("expected 422")
    except ApiException as e:
        assert e.status == 422 and "spec.accessModes: Required value" in _status_of(e)["message"]

    # a watch sees later changes
    rv = (await v1.list_namespaced_secret("default")).metadata.resource_version
    w = await v1.list_namespaced_secret("default", watch=True, resource_version=rv, _preload_content=False)
    await v1.delete_namespaced_secret("s1", "default")
    line = json.loads(await asyncio.wait_for(w.content.readline(), 5))
    w.close()
    assert line["type"] == "DELETED" and line["object"]["kind"] == "Secret"
    assert line["object"]["metadata"]["name"] == "s1"


async def test_discovery_lists_the_kinds(cluster: Any) -> None:
    _, _, body = await raw_request(cluster, "GET", "/api/v1")
    names = {r["name"] for r in json.loads(body)["resources"]}
    assert {"secrets", "configmaps", "persistentvolumeclaims", "serviceaccounts"} <= names
    _, _, body = await raw_request(cluster, "GET", "/apis")
    assert [g["name"] for g in json.loads(body)["groups"]] == ["scheduling.k8s.io"]
    status, _, body = await raw_request(cluster, "GET", "/apis/scheduling.k8s.io/v1")
    assert status == 200 and json.loads(body)["resources"][0]["name"] == "priorityclasses"


async def test_admission_refuses_missing_service_account_and_priority_class(
    api: client.ApiClient, v1: client.CoreV1Api
) -> None:
    for field, value, message in (
        (
            "serviceAccountName",
            "robot",
            'pods "p1" is forbidden: error looking up service account default/robot: '
            'serviceaccount "robot" not found',
        ),
        ("priorityClassName", "gold", 'pods "p1" is forbidden: no PriorityClass with name gold was found'),
    ):
        try:
            await v1.create_namespaced_pod("default", pod_manifest("p1", "true", **{field: value}))
            raise AssertionError("expected 403")
        except ApiException as e:
            assert e.status == 403
            assert _status_of(e)["reason"] == "Forbidden" and _status_of(e)["message"] == message
    assert (await v1.list_namespaced_pod("default")).items == []
    await client.SchedulingV1Api(api).create_priority_class({"metadata": {"name": "gold"}, "value": 77})
    await v1.create_namespaced_service_account("default", {"metadata": {"name": "robot"}})
    pod = await v1.create_namespaced_pod(
        "default", pod_manifest("p1", "true", priorityClassName="gold", serviceAccountName="robot")
    )
    assert pod.spec.priority == 77 and pod.spec.service_account_name == "robot"


async def test_secret_and_configmap_values_reach_env_and_files(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_secret(
        "default", {"metadata": {"name": "creds"}, "stringData": {"user": "ada"}}
    )
    await v1.create_namespaced_config_map(
        "default", {"metadata": {"name": "settings"}, "data": {"MODE": "fast", "app.ini": "x=1"}}
    )
    pod = pod_manifest(
        "p2", 'echo "$USER_NAME $MODE $CFG_MODE"; cat /etc/creds/user; echo; cat /etc/cfg/conf/app.ini'
    )
    base = pod["spec"]["containers"][0]
    base["env"] = [{"name": "USER_NAME", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}}]
    base["envFrom"] = [
        {"configMapRef": {"name": "settings"}},
        {"prefix": "CFG_", "configMapRef": {"name": "settings"}},
    ]
    base["volumeMounts"] += [
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "cfg", "mountPath": "/etc/cfg"},
    ]
    pod["spec"]["volumes"] += [
        {"name": "creds", "secret": {"secretName": "creds"}},
        {
            "name": "cfg",
            "configMap": {"name": "settings", "items": [{"key": "app.ini", "path": "conf/app.ini"}]},
        },
    ]
    await v1.create_namespaced_pod("default", pod)
    await wait_phase(v1, "p2", ("Succeeded",))
    assert await _log(v1, "p2") == "ada fast fast\nada\nx=1"


async def test_missing_secret_env_waits_with_create_container_config_error(v1: client.CoreV1Api) -> None:
    pod = pod_manifest("p3", 'echo "$TOKEN"')
    pod["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    ]
    await v1.create_namespaced_pod("default", pod)
    got = await wait_for(
        lambda: v1.read_namespaced_pod("p3", "default"),
        lambda p: (
            bool(p.status.container_statuses)
            and cstatus(p, "base").state.waiting is not None
            and cstatus(p, "base").state.waiting.reason == "CreateContainerConfigError"
        ),
    )
    assert cstatus(got, "base").state.waiting.message == 'secret "api" not found'
    assert got.status.phase == "Pending"
    assert ("Failed", 'Error: secret "api" not found') in await _events(v1, "p3")
    # a secret without the key: the kubelet's other message
    await v1.create_namespaced_secret("default", {"metadata": {"name": "api"}, "stringData": {"other": "x"}})
    await wait_for(
        lambda: _events(v1, "p3"),
        lambda evs: ("Failed", "Error: couldn't find key token in Secret default/api") in evs,
    )
    await v1.patch_namespaced_secret("api", "default", {"stringData": {"token": "t0k"}})
    await wait_phase(v1, "p3", ("Succeeded",))
    assert await _log(v1, "p3") == "t0k\n"


async def test_missing_envfrom_configmap_and_missing_volume(v1: client.CoreV1Api) -> None:
    pod = pod_manifest("p4", "true")
    pod["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "absent"}}]
    await v1.create_namespaced_pod("default", pod)
    await wait_for(
        lambda: _events(v1, "p4"), lambda evs: ("Failed", 'Error: configmap "absent" not found') in evs
    )

    pod = pod_manifest("p5", "true")
    pod["spec"]["volumes"].append({"name": "conf", "configMap": {"name": "gone"}})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "conf", "mountPath": "/conf"})
    await v1.create_namespaced_pod("default", pod)
    msg = 'MountVolume.SetUp failed for volume "conf" : configmap "gone" not found'
    await wait_for(lambda: _events(v1, "p5"), lambda evs: ("FailedMount", msg) in evs)
    waiting = cstatus(await v1.read_namespaced_pod("p5", "default"), "base").state.waiting
    assert waiting.reason == "ContainerCreating"
    await v1.create_namespaced_config_map("default", {"metadata": {"name": "gone"}, "data": {"k": "v"}})
    await wait_phase(v1, "p5", ("Succeeded",))


async def test_missing_pvc_fails_scheduling_until_created(v1: client.CoreV1Api) -> None:
    pod = pod_manifest("p6", "echo hi > /data/f; cat /data/f")
    pod["spec"]["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": "claim"}})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "data", "mountPath": "/data"})
    await v1.create_namespaced_pod("default", pod)
    # as kube-scheduler 1.36 words it
    msg = '0/1 nodes are available: persistentvolumeclaim "claim" not found. not found'
    await wait_for(lambda: _events(v1, "p6"), lambda evs: ("FailedScheduling", msg) in evs)
    got = await v1.read_namespaced_pod("p6", "default")
    assert got.spec.node_name is None and got.status.conditions[0].reason == "Unschedulable"
    await v1.create_namespaced_persistent_volume_claim(
        "default",
        {
            "metadata": {"name": "claim"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    await wait_phase(v1, "p6", ("Succeeded",))
    assert await _log(v1, "p6") == "hi\n"


async def test_required_pod_affinity_term_needs_topology_key(v1: client.CoreV1Api) -> None:
    term = {"labelSelector": {"matchLabels": {"app": "x"}}}
    pod = pod_manifest(
        "p7", "true", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    )
    try:
        await v1.create_namespaced_pod("default", pod)
        raise AssertionError("expected 422")
    except ApiException as e:
        status = _status_of(e)
        assert e.status == 422
        field = "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey"
        assert {
            "reason": "FieldValueRequired",
            "message": "Required value: can not be empty",
            "field": field,
        } in (status["details"]["causes"])
    term["topologyKey"] = "kubernetes.io/hostname"
    await v1.create_namespaced_pod("default", pod)


async def test_bearer_scheme_is_case_insensitive(cluster: Any) -> None:
    for scheme, expected in (("bearer", 200), ("BEARER", 200), ("Basic", 401)):
        status, _, _ = await raw_request(
            cluster,
            "GET",
            "/api/v1/namespaces",
            headers={"Authorization": f"{scheme} {cluster.token}"},
            token=None,
        )
        assert status == expected, scheme


async def test_pod_stored_without_what_the_apiserver_omits(v1: client.CoreV1Api, cluster: Any) -> None:
    pod = pod_manifest("p8", "true", nodeSelector={}, hostNetwork=False, affinity={}, imagePullSecrets=[])
    pod["spec"]["containers"][0].update(args=[], env=[], stdin=False)
    status, _, body = await raw_request(cluster, "POST", "/api/v1/namespaces/default/pods", json_body=pod)
    assert status == 201
    spec = json.loads(body)["spec"]
    for key in ("nodeSelector", "hostNetwork", "imagePullSecrets"):
        assert key not in spec, key
    assert spec["affinity"] == {}  # an empty struct is kept
    assert not {"args", "env", "stdin"} & set(spec["containers"][0])
