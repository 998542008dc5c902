"""core/v1 Pods over the real client: create/get/list/delete/patch, validation, selectors, defaults."""

from __future__ import annotations

import json

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.testing.sim import SimCluster

from .conftest import pod_manifest, wait_for, wait_phase


async def test_create_get_list_delete(v1: client.CoreV1Api, api: client.ApiClient) -> None:
    created = await v1.create_namespaced_pod("default", pod_manifest("p1", "echo hi", labels={"app": "x"}))
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.generation == 1
    assert created.status.phase == "Pending"
    got = await v1.read_namespaced_pod("p1", "default")
    assert got.metadata.uid == created.metadata.uid
    listed = await v1.list_namespaced_pod("default")
    assert [p.metadata.name for p in listed.items] == ["p1"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)
    everywhere = await v1.list_pod_for_all_namespaces()
    assert [p.metadata.name for p in everywhere.items] == ["p1"]
    await wait_phase(v1, "p1", ("Succeeded",))
    deleted = await v1.delete_namespaced_pod("p1", "default")
    assert deleted.metadata.name == "p1"
    with pytest.raises(ApiException) as e:
        await v1.read_namespaced_pod("p1", "default")
    assert e.value.status == 404
    body = json.loads(e.value.body)
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "p1" not found',
        "reason": "NotFound",
        "details": {"name": "p1", "kind": "pods"},
        "code": 404,
    }


async def test_server_side_defaults(v1: client.CoreV1Api, api: client.ApiClient) -> None:
    manifest = pod_manifest("defaults", "true", restart_policy="Never")
    del manifest["spec"]["restartPolicy"]
    manifest["spec"]["containers"][0]["image"] = "alpine"
    resp = await v1.create_namespaced_pod("default", manifest, _preload_content=False)
    raw = json.loads(await resp.read())
    spec = raw["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["serviceAccountName"] == "default"
    assert spec["terminationGracePeriodSeconds"] == 30
    c = spec["containers"][0]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["imagePullPolicy"] == "Always"  # untagged image
    keys = {t["key"] for t in spec["tolerations"]}
    assert keys == {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    assert raw["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert raw["metadata"]["creationTimestamp"].endswith("Z")


async def test_generate_name(v1: client.CoreV1Api) -> None:
    manifest = pod_manifest("x", "true")
    del manifest["metadata"]["name"]
    manifest["metadata"]["generateName"] = "job-"
    created = await v1.create_namespaced_pod("default", manifest)
    assert created.metadata.name.startswith("job-") and len(created.metadata.name) == 9


async def _status_of(call) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiException) as e:
        await call
    return e.value.status, json.loads(e.value.body)


async def test_validation_invalid_name(v1: client.CoreV1Api) -> None:
    code, body = await _status_of(v1.create_namespaced_pod("default", pod_manifest("Bad_Name", "true")))
    assert code == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith(
        'Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'
    )
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert body["details"]["causes"][0]["reason"] == "FieldValueInvalid"
    assert body["details"]["kind"] == "Pod" and body["details"]["name"] == "Bad_Name"


async def test_validation_missing_image_and_containers(v1: client.CoreV1Api) -> None:
    manifest = pod_manifest("noimage", "true")
    del manifest["spec"]["containers"][0]["image"]
    code, body = await _status_of(v1.create_namespaced_pod("default", manifest))
    assert code == 422
    assert body["message"] == 'Pod "noimage" is invalid: spec.containers[0].image: Required value'
    assert body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"}
    ]
    manifest = pod_manifest("nocontainers", "true")
    manifest["spec"]["containers"] = []
    code, body = await _status_of(v1.create_namespaced_pod("default", manifest))
    assert code == 422 and body["message"] == 'Pod "nocontainers" is invalid: spec.containers: Required value'


async def test_validation_several_errors(v1: client.CoreV1Api) -> None:
    manifest = pod_manifest("multi", "true", sidecar=True)
    manifest["spec"]["containers"][1]["name"] = "base"
    manifest["spec"]["containers"][0]["volumeMounts"][0]["name"] = "nope"
    code, body = await _status_of(v1.create_namespaced_pod("default", manifest))
    assert code == 422
    assert body["message"] == (
        'Pod "multi" is invalid: [spec.containers[0].volumeMounts[0].name: Not found: "nope", '
        'spec.containers[1].name: Duplicate value: "base"]'
    )


async def test_already_exists_and_unknown_namespace(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("dup", "sleep 5"))
    code, body = await _status_of(v1.create_namespaced_pod("default", pod_manifest("dup", "true")))
    assert code == 409 and body["reason"] == "AlreadyExists"
    assert body["message"] == 'pods "dup" already exists'
    assert body["details"] == {"name": "dup", "kind": "pods"}
    code, body = await _status_of(v1.create_namespaced_pod("nope", pod_manifest("x", "true")))
    assert code == 404 and body["message"] == 'namespaces "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "namespaces"}


async def test_label_and_field_selectors(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod(
        "default", pod_manifest("a", "sleep 30", labels={"app": "x", "tier": "web"})
    )
    await v1.create_namespaced_pod("default", pod_manifest("b", "sleep 30", labels={"app": "y"}))
    await v1.create_namespaced_pod("default", pod_manifest("c", "true", labels={"app": "x"}))
    await v1.create_namespaced_pod("airflow", pod_manifest("d", "sleep 30", labels={"app": "x"}))

    async def names(**kw: str) -> list[str]:
        return sorted(p.metadata.name for p in (await v1.list_pod_for_all_namespaces(**kw)).items)

    assert await names(label_selector="app=x") == ["a", "c", "d"]
    assert await names(label_selector="app==x,tier=web") == ["a"]
    assert await names(label_selector="app!=x") == ["b"]
    assert await names(label_selector="app in (y, z)") == ["b"]
    assert await names(label_selector="app notin (x)") == ["b"]
    assert await names(label_selector="tier") == ["a"]
    assert await names(label_selector="!tier") == ["b", "c", "d"]
    assert await names(field_selector="metadata.name=b") == ["b"]
    assert await names(field_selector="metadata.namespace=airflow") == ["d"]
    assert await names(field_selector="metadata.name!=a,metadata.namespace=default") == ["b", "c"]
    await wait_phase(v1, "c", ("Succeeded",))
    assert await names(field_selector="status.phase=Succeeded") == ["c"]
    await wait_for(lambda: names(field_selector="spec.nodeName=sim-node"), lambda n: len(n) == 4)
    with pytest.raises(ApiException) as e:
        await v1.list_namespaced_pod("default", field_selector="spec.bogus=1")
    assert e.value.status == 400 and "field label not supported: spec.bogus" in e.value.body


async def test_merge_patch_labels_annotations(v1: client.CoreV1Api, api: client.ApiClient) -> None:
    created = await v1.create_namespaced_pod("default", pod_manifest("pp", "sleep 30", labels={"a": "1"}))
    patched = await v1.patch_namespaced_pod(
        "pp", "default", {"metadata": {"labels": {"b": "2", "a": None}, "annotations": {"k": "v"}}}
    )
    assert patched.metadata.labels == {"b": "2"}
    assert patched.metadata.annotations == {"k": "v"}
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    # application/merge-patch+json explicitly
    resp = await v1.patch_namespaced_pod(
        "pp",
        "default",
        {"metadata": {"annotations": {"k2": "v2"}}},
        _content_type="application/merge-patch+json",
    )
    assert resp.metadata.annotations == {"k": "v", "k2": "v2"}
    # stale resourceVersion -> 409 Conflict
    with pytest.raises(ApiException) as e:
        await v1.patch_namespaced_pod(
            "pp",
            "default",
            {"metadata": {"resourceVersion": created.metadata.resource_version, "labels": {"c": "3"}}},
        )
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "Conflict"
    # spec is immutable
    with pytest.raises(ApiException) as e:
        await v1.patch_namespaced_pod("pp", "default", {"spec": {"restartPolicy": "Always"}})
    assert e.value.status == 422 and "pod updates may not change fields" in e.value.body


async def test_graceful_delete_sets_deletion_timestamp(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("g", "sleep 30"))
    await wait_phase(v1, "g", ("Running",))
    deleted = await v1.delete_namespaced_pod("g", "default")
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 30

    async def gone() -> bool:
        try:
            await v1.read_namespaced_pod("g", "default")
            return False
        except ApiException as e:
            return e.status == 404

    await wait_for(gone, bool, timeout=5)


async def test_namespaces_and_nodes(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    names = sorted(n.metadata.name for n in (await v1.list_namespace()).items)
    assert names == ["airflow", "default"]
    ns = await v1.create_namespace({"metadata": {"name": "team-a"}})
    assert ns.status.phase == "Active"
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == "team-a"
    assert (await v1.read_namespace("team-a")).metadata.uid == ns.metadata.uid
    with pytest.raises(ApiException) as e:
        await v1.create_namespace({"metadata": {"name": "team-a"}})
    assert e.value.status == 409
    with pytest.raises(ApiException) as e:
        await v1.create_namespace({"metadata": {"name": "Team_B"}})
    assert e.value.status == 422
    nodes = (await v1.list_node()).items
    assert [n.metadata.name for n in nodes] == ["sim-node"]
    node = nodes[0]
    assert node.metadata.labels["kubernetes.io/hostname"] == "sim-node"
    assert node.metadata.labels["kubernetes.io/os"] == "linux"
    assert node.status.allocatable["cpu"] == "8" and node.status.allocatable["nvidia.com/gpu"] == "0"
