"""The real control plane (kube-apiserver v1.36 + etcd + kwok) behaves as the operator needs.

These tests talk to the real API server through kubernetes_asyncio / aiohttp over TLS, with the
operator's least-privilege ServiceAccount wherever the operator would act. They also record the exact
responses of the real server that the simulator (kpo_async.testing.sim) must reproduce, in
<cluster dir>/observed-api-facts.json; docs/real-control-plane.md lists them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from tests.e2e.conftest import (
    ANN,
    SIDECAR,
    Cluster,
    container_status,
    pod_manifest,
    raw_request,
    stream_lines,
    wait_for_pod,
    ws_exec,
)

# The API server and kwok themselves; `make e2e` covers the API server, so the real-node run skips these.
pytestmark = [pytest.mark.e2e, pytest.mark.kwok_only]

NODE = "kwok-node-0"


def _phase(phase: str):
    return lambda p: p.status is not None and p.status.phase == phase


def _base_terminated(p: client.V1Pod) -> bool:
    for s in (p.status and p.status.container_statuses) or []:
        if s.name == "base" and s.state and s.state.terminated:
            return True
    return False


def _waiting_reason(reason: str, container: str = "base"):
    def check(p: client.V1Pod) -> bool:
        for s in (p.status and p.status.container_statuses) or []:
            if s.name == container and s.state and s.state.waiting and s.state.waiting.reason == reason:
                return True
        return False

    return check


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _status_body(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def _condition(pod: client.V1Pod, type_: str) -> client.V1PodCondition:
    for c in pod.status.conditions or []:
        if c.type == type_:
            return c
    raise AssertionError(f"no {type_} condition on {pod.metadata.name}")


# ---------------------------------------------------------------------------------------------------
# Pod lifecycle as the operator sees it


async def test_sidecar_pod_runs_streams_logs_serves_xcom_and_succeeds(
    cluster: Cluster, operator_api, pod_name, cleanup_pods
):
    ns, name = cluster.namespace, pod_name("life")
    cleanup_pods.append(name)
    # Files can be written before the pod exists; the podfiles helper keeps them.
    cluster.write_log(name, ["first line", "second line"])
    cluster.write_xcom(name, '{"rows": 3}')
    v1 = client.CoreV1Api(operator_api)

    await v1.create_namespaced_pod(ns, pod_manifest(name, {ANN + "duration": "3s"}))
    pod = await wait_for_pod(operator_api, ns, name, _phase("Running"), what="phase Running")

    assert pod.spec.node_name == NODE, "kube-scheduler binds the pod to the kwok node"
    assert pod.status.host_ip == "127.0.0.1"
    assert pod.status.pod_ip.startswith("127.0.100."), "pod IPs come from a loopback range"
    # The kubelet lists container statuses sorted by name, not in spec order.
    assert [s.name for s in pod.status.container_statuses] == [SIDECAR, "base"]
    assert all(s.state.running and s.ready for s in pod.status.container_statuses)
    assert _condition(pod, "Ready").status == "True"

    # Follow the base container's log: lines written while following arrive, and the stream ends by
    # itself when the container terminates (as with a real kubelet).
    follow = asyncio.create_task(
        stream_lines(operator_api, f"/api/v1/namespaces/{ns}/pods/{name}/log?container=base&follow=true")
    )
    await asyncio.sleep(0.5)
    cluster.write_log(name, ["third line, written while following"])
    code, lines = await follow
    assert code == 200
    assert lines == ["first line", "second line", "third line, written while following"]

    pod = await wait_for_pod(operator_api, ns, name, _base_terminated, what="base terminated")
    base = container_status(pod, "base").state.terminated
    assert (base.exit_code, base.reason) == (0, "Completed")
    assert 2 <= (base.finished_at - base.started_at).total_seconds() <= 5, "duration annotation: 3s"
    # The sidecar keeps the pod Running until it is told to stop.
    assert pod.status.phase == "Running"
    assert container_status(pod, SIDECAR).state.running is not None
    assert _condition(pod, "Ready").reason == "ContainersNotReady"

    result = await ws_exec(operator_api, ns, name, SIDECAR, ["cat", "/airflow/xcom/return.json"])
    assert (result.stdout, result.exit_code) == ('{"rows": 3}', 0)
    # kwok serves exec with the same k8s.io/cri-streaming code as a v1.36 kubelet: {"status": "Success"}
    # (containerd's copy also sends "metadata": {}); clients must only look at "status".
    assert result.status is not None and result.status["status"] == "Success"

    result = await ws_exec(operator_api, ns, name, SIDECAR, ["touch", "/airflow/xcom/.kpo-async-done"])
    assert result.exit_code == 0
    assert cluster.sidecar_stop_marker(name).exists()

    pod = await wait_for_pod(operator_api, ns, name, _phase("Succeeded"), what="phase Succeeded")
    side = container_status(pod, SIDECAR).state.terminated
    assert (side.exit_code, side.reason) == (0, "Completed")
    assert (_condition(pod, "Ready").status, _condition(pod, "Ready").reason) == ("False", "PodCompleted")
    assert pod.metadata.annotations[ANN + "sidecar-stopped"] == "true"

    # Logs stay readable after the pod finished; `kubectl logs` works through the same path.
    out = cluster.run_kubectl("-n", ns, "logs", name, "-c", "base", kubeconfig=cluster.operator_kubeconfig)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "first line"


@pytest.mark.parametrize("sidecar", [True, False], ids=["with-sidecar", "single-container"])
async def test_exit_code_annotation_fails_the_pod(
    cluster: Cluster, operator_api, pod_name, cleanup_pods, sidecar
):
    ns, name = cluster.namespace, pod_name("fail")
    cleanup_pods.append(name)
    v1 = client.CoreV1Api(operator_api)
    annotations = {
        ANN + "duration": "1s",
        ANN + "exit-code": "3",
        ANN + "reason": "Error",
        ANN + "message": "boom: the task failed",
    }
    await v1.create_namespaced_pod(ns, pod_manifest(name, annotations, sidecar=sidecar))
    pod = await wait_for_pod(operator_api, ns, name, _base_terminated, what="base terminated")
    term = container_status(pod, "base").state.terminated
    assert (term.exit_code, term.reason, term.message) == (3, "Error", "boom: the task failed")

    if sidecar:
        assert pod.status.phase == "Running"
        # Fallback that needs no exec: the annotation the exec'd stop marker leads to.
        await v1.patch_namespaced_pod(
            name, ns, {"metadata": {"annotations": {ANN + "sidecar-stopped": "true"}}}
        )
    pod = await wait_for_pod(operator_api, ns, name, _phase("Failed"), what="phase Failed")
    assert container_status(pod, "base").state.terminated.exit_code == 3
    assert (_condition(pod, "Ready").status, _condition(pod, "Ready").reason) == ("False", "PodFailed")


async def test_image_from_registry_invalid_stays_pending(
    cluster: Cluster, operator_api, pod_name, cleanup_pods, observed_facts
):
    ns, name = cluster.namespace, pod_name("pull")
    cleanup_pods.append(name)
    v1 = client.CoreV1Api(operator_api)
    image = "registry.invalid/kpo-async/missing:1.0"
    await v1.create_namespaced_pod(ns, pod_manifest(name, image=image))

    pod = await wait_for_pod(operator_api, ns, name, _waiting_reason("ErrImagePull"), what="ErrImagePull")
    assert pod.status.phase == "Pending"
    waiting = container_status(pod, "base").state.waiting
    assert "registry.invalid" in waiting.message and "no such host" in waiting.message

    # Reading the log of a container that never started is a 400 from the API server itself.
    with pytest.raises(ApiException) as exc:
        await v1.read_namespaced_pod_log(name, ns, container="base")
    assert exc.value.status == 400
    body = _status_body(exc.value)
    observed_facts["log_of_waiting_container_400"] = body
    assert body["reason"] == "BadRequest"
    assert body["message"].startswith(f'container "base" in pod "{name}" is waiting to start:')

    pod = await wait_for_pod(
        operator_api, ns, name, _waiting_reason("ImagePullBackOff"), what="ImagePullBackOff", timeout=10
    )
    assert pod.status.phase == "Pending"
    assert container_status(pod, "base").state.waiting.message.startswith(f'Back-off pulling image "{image}"')
    events = await v1.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
    assert any(e.reason == "Failed" and e.type == "Warning" for e in events.items)


# ---------------------------------------------------------------------------------------------------
# Least privilege (docs/rbac.md)

ALLOWED = [
    ("pods", "", "create"),
    ("pods", "", "get"),
    ("pods", "", "list"),
    ("pods", "", "watch"),
    ("pods", "", "delete"),
    ("pods", "", "patch"),
    ("pods", "log", "get"),
    ("pods", "exec", "create"),
    ("pods", "exec", "get"),
    ("events", "", "list"),
    ("events", "", "watch"),
]
DENIED = [
    ("pods", "", "update"),
    ("pods", "", "deletecollection"),
    ("pods", "status", "patch"),
    ("pods", "attach", "create"),
    ("pods", "portforward", "create"),
    ("pods", "ephemeralcontainers", "patch"),
    ("events", "", "create"),
    ("secrets", "", "get"),
    ("secrets", "", "list"),
    ("configmaps", "", "get"),
    ("serviceaccounts", "token", "create"),
]


async def _can(api, namespace: str, resource: str, subresource: str, verb: str) -> bool:
    review = await client.AuthorizationV1Api(api).create_self_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "namespace": namespace,
                    "resource": resource,
                    "subresource": subresource,
                    "verb": verb,
                }
            },
        }
    )
    return review.status.allowed


async def test_operator_role_allows_exactly_what_docs_rbac_lists(
    cluster: Cluster, operator_api, observed_facts
):
    ns = cluster.namespace
    for resource, sub, verb in ALLOWED:
        assert await _can(operator_api, ns, resource, sub, verb), f"should allow {verb} {resource}/{sub}"
    for resource, sub, verb in DENIED:
        assert not await _can(operator_api, ns, resource, sub, verb), f"should deny {verb} {resource}/{sub}"
    # Namespaced Role: nothing in other namespaces.
    assert not await _can(operator_api, "default", "pods", "", "list")

    v1 = client.CoreV1Api(operator_api)
    await v1.list_namespaced_pod(ns)
    await v1.list_namespaced_event(ns)
    with pytest.raises(ApiException) as exc:
        await v1.list_namespaced_secret(ns)
    assert exc.value.status == 403
    body = _status_body(exc.value)
    observed_facts["forbidden_list_secrets_403"] = body
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'secrets is forbidden: User "system:serviceaccount:kpo-async-e2e:kpo-async" cannot list '
        'resource "secrets" in API group "" in the namespace "kpo-async-e2e"'
    )
    with pytest.raises(ApiException) as exc:
        await v1.list_namespaced_pod("default")
    assert exc.value.status == 403


async def test_missing_pods_exec_permission_is_a_clear_403(
    cluster: Cluster, admin_api, operator_api, missing_perm_api, pod_name, cleanup_pods, observed_facts
):
    ns, name = cluster.namespace, pod_name("noexec")
    cleanup_pods.append(name)
    cluster.write_xcom(name, '"ok"')
    await client.CoreV1Api(admin_api).create_namespaced_pod(ns, pod_manifest(name, {ANN + "duration": "60s"}))
    await wait_for_pod(admin_api, ns, name, _phase("Running"), what="phase Running")

    # Everything else in the Role still works for this ServiceAccount...
    v1 = client.CoreV1Api(missing_perm_api)
    await v1.read_namespaced_pod(name, ns)
    # ...but the WebSocket exec upgrade is refused,
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await ws_exec(missing_perm_api, ns, name, SIDECAR, ["cat", "/airflow/xcom/return.json"])
    assert exc.value.status == 403
    # and the Status body says which permission is missing.
    path = f"/api/v1/namespaces/{ns}/pods/{name}/exec?container={SIDECAR}&command=cat&stdout=true"
    code, text, _ = await raw_request(missing_perm_api, "GET", path, ws_upgrade=True)
    body = json.loads(text)
    observed_facts["exec_without_pods_exec_403"] = body
    assert (code, body["reason"], body["code"]) == (403, "Forbidden", 403)
    assert body["message"] == (
        f'pods "{name}" is forbidden: User "system:serviceaccount:kpo-async-e2e:kpo-async-no-exec" '
        'cannot get resource "pods/exec" in API group "" in the namespace "kpo-async-e2e"'
    )
    assert body["details"] == {"name": name, "kind": "pods"}

    # The operator's ServiceAccount can.
    result = await ws_exec(operator_api, ns, name, SIDECAR, ["cat", "/airflow/xcom/return.json"])
    assert (result.stdout, result.exit_code) == ('"ok"', 0)


async def test_websocket_exec_needs_both_get_and_create_on_pods_exec(
    cluster: Cluster, admin_api, pod_name, cleanup_pods, observed_facts
):
    """Verifies the claim in docs/rbac.md against the real API server (v1.36)."""
    ns, name = cluster.namespace, pod_name("wsrbac")
    cleanup_pods.append(name)
    v1 = client.CoreV1Api(admin_api)
    rbac = client.RbacAuthorizationV1Api(admin_api)
    await v1.create_namespaced_pod(ns, pod_manifest(name, {ANN + "duration": "60s"}))
    await wait_for_pod(admin_api, ns, name, _phase("Running"), what="phase Running")

    outcomes: dict[str, Any] = {}
    exec_path = f"/api/v1/namespaces/{ns}/pods/{name}/exec?container={SIDECAR}&command=true&stdout=true"
    variants = {"get-only": ["get"], "create-only": ["create"], "get-and-create": ["get", "create"]}
    try:
        for variant, verbs in variants.items():
            sa = f"e2e-exec-{variant}"
            await v1.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
            await rbac.create_namespaced_role(
                ns,
                {
                    "metadata": {"name": sa},
                    "rules": [
                        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": verbs},
                    ],
                },
            )
            await rbac.create_namespaced_role_binding(
                ns,
                {
                    "metadata": {"name": sa},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
                    "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
                },
            )
            token = await v1.create_namespaced_service_account_token(
                sa, ns, {"spec": {"expirationSeconds": 600}}
            )
            cfg = client.Configuration()
            cfg.host = admin_api.configuration.host
            cfg.ssl_ca_cert = admin_api.configuration.ssl_ca_cert
            cfg.api_key = {"BearerToken": "Bearer " + token.status.token}
            async with client.ApiClient(cfg) as api:
                # RBAC changes reach the authorizer's cache within a moment.
                for _ in range(50):
                    if await _can(api, ns, "pods", "exec", verbs[0]):
                        break
                    await asyncio.sleep(0.1)
                try:
                    result = await ws_exec(api, ns, name, SIDECAR, ["true"])
                    outcomes[variant] = f"allowed (exit {result.exit_code})"
                except aiohttp.WSServerHandshakeError as e:
                    _, text, _ = await raw_request(api, "GET", exec_path, ws_upgrade=True)
                    outcomes[variant] = f"HTTP {e.status}: {json.loads(text).get('message')}"
    finally:
        for variant in variants:
            sa = f"e2e-exec-{variant}"
            for call in (
                rbac.delete_namespaced_role_binding(sa, ns),
                rbac.delete_namespaced_role(sa, ns),
                v1.delete_namespaced_service_account(sa, ns),
            ):
                try:
                    await call
                except ApiException:
                    pass
    observed_facts["websocket_exec_rbac"] = outcomes
    assert outcomes["get-and-create"].startswith("allowed")
    # get without create: v1.36 refuses with an empty reason (AuthorizePodWebsocketUpgradeCreatePermission).
    assert outcomes["get-only"] == f'HTTP 403: pods "{name}" is forbidden: ', outcomes
    assert outcomes["create-only"].startswith("HTTP 403"), outcomes


# ---------------------------------------------------------------------------------------------------
# Exact responses of the real server, for the simulator


async def test_observed_api_facts(
    cluster: Cluster, admin_api, operator_api, pod_name, cleanup_pods, observed_facts
):
    ns = cluster.namespace
    v1 = client.CoreV1Api(operator_api)
    admin = client.CoreV1Api(admin_api)
    facts = observed_facts

    code, text, _ = await raw_request(admin_api, "GET", "/version")
    facts["version"] = {k: v for k, v in json.loads(text).items() if k in ("major", "minor", "gitVersion")}
    assert json.loads(text)["gitVersion"] == "v1.36.3"

    # 422: invalid pod name.
    with pytest.raises(ApiException) as exc:
        await v1.create_namespaced_pod(ns, pod_manifest("Bad_Name"))
    body = _status_body(exc.value)
    facts["create_pod_invalid_name_422"] = body
    assert (exc.value.status, body["reason"], body["code"]) == (422, "Invalid", 422)
    assert body["details"]["causes"][0]["field"] == "metadata.name"

    # 404: namespace that does not exist (as admin: the operator may not even look there).
    with pytest.raises(ApiException) as exc:
        await admin.create_namespaced_pod("kpo-async-no-such-ns", pod_manifest("x"))
    body = _status_body(exc.value)
    facts["create_pod_missing_namespace_404"] = body
    assert (exc.value.status, body["reason"]) == (404, "NotFound")
    assert body["details"] == {"name": "kpo-async-no-such-ns", "kind": "namespaces"}

    # 404: pod that does not exist.
    with pytest.raises(ApiException) as exc:
        await v1.read_namespaced_pod("kpo-async-no-such-pod", ns)
    body = _status_body(exc.value)
    facts["get_missing_pod_404"] = body
    assert body["message"] == 'pods "kpo-async-no-such-pod" not found'

    # 409: the same name twice.
    name = pod_name("dup")
    cleanup_pods.append(name)
    await v1.create_namespaced_pod(ns, pod_manifest(name, {ANN + "pending": "30s"}))
    with pytest.raises(ApiException) as exc:
        await v1.create_namespaced_pod(ns, pod_manifest(name))
    body = _status_body(exc.value)
    facts["create_pod_already_exists_409"] = body
    assert (exc.value.status, body["reason"], body["details"]) == (
        409,
        "AlreadyExists",
        {"name": name, "kind": "pods"},
    )

    # 400: log of a container still ContainerCreating (the "pending" annotation holds it there).
    await wait_for_pod(operator_api, ns, name, _waiting_reason("ContainerCreating"), what="ContainerCreating")
    with pytest.raises(ApiException) as exc:
        await v1.read_namespaced_pod_log(name, ns, container="base")
    body = _status_body(exc.value)
    facts["log_of_container_creating_400"] = body
    assert body["message"] == f'container "base" in pod "{name}" is waiting to start: ContainerCreating'

    # 400: log without naming the container of a two-container pod.
    with pytest.raises(ApiException) as exc:
        await v1.read_namespaced_pod_log(name, ns)
    facts["log_without_container_400"] = _status_body(exc.value)
    assert exc.value.status == 400

    # List at a resourceVersion etcd no longer has: compact etcd's history first (what
    # the API server itself does every 5 minutes), through etcd's JSON gateway on loopback.
    etcd = cluster.env["KPO_ASYNC_ETCD"]
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{etcd}/v3/kv/range", json={"key": "Lw=="}) as resp:
            revision = int((await resp.json())["header"]["revision"])
        async with session.post(
            f"{etcd}/v3/kv/compaction", json={"revision": revision, "physical": True}
        ) as resp:
            assert resp.status == 200, await resp.text()
    code, text, _ = await raw_request(
        operator_api, "GET", f"/api/v1/namespaces/{ns}/pods?resourceVersion=1&resourceVersionMatch=Exact"
    )
    # Recorded, not asserted: v1.36 may answer an exact list from a watch-cache snapshot even after
    # etcd compacted that revision (observed: 200 with an empty PodList at resourceVersion "1").
    facts["list_exact_old_resource_version_after_compaction"] = {
        "http_status": code,
        "body": json.loads(text),
    }

    # Logs: timestamps format and sinceTime precision.
    name = pod_name("since")
    cleanup_pods.append(name)
    t0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=10)
    stamps = [t0 + dt.timedelta(milliseconds=ms) for ms in (200, 600, 1300, 2100)]
    cluster.write_log(name, [(t, f"line at +{(t - t0).total_seconds()}s") for t in stamps])
    cluster.write_xcom(name, "{}")
    await v1.create_namespaced_pod(ns, pod_manifest(name, {ANN + "duration": "60s"}))
    await wait_for_pod(operator_api, ns, name, _phase("Running"), what="phase Running")
    base_path = f"/api/v1/namespaces/{ns}/pods/{name}/log?container=base"
    _, with_ts = await stream_lines(operator_api, base_path + "&timestamps=true")
    facts["log_timestamps_true_first_line"] = with_ts[0]
    since = (t0 + dt.timedelta(milliseconds=700)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    code, since_lines = await stream_lines(operator_api, base_path + f"&sinceTime={since}")
    facts["log_since_time_fractional"] = {"sinceTime": since, "http_status": code, "lines": since_lines}
    since_whole = (t0 + dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, whole_lines = await stream_lines(operator_api, base_path + f"&sinceTime={since_whole}")
    facts["log_since_time_whole_second"] = {"sinceTime": since_whole, "lines": whole_lines}
    _, tail = await stream_lines(operator_api, base_path + "&tailLines=1")
    facts["log_tail_lines_1"] = tail
    assert tail == ["line at +2.1s"]

    # Exec: a non-zero exit comes as a Status on the error channel.
    ok = await ws_exec(operator_api, ns, name, SIDECAR, ["cat", "/airflow/xcom/return.json"])
    facts["exec_success_status"] = ok.status
    result = await ws_exec(operator_api, ns, name, SIDECAR, ["cat", "/airflow/xcom/missing.json"])
    facts["exec_nonzero_exit_status"] = {"status": result.status, "stderr": result.stderr}
    assert result.exit_code == 1
    assert result.status["reason"] == "NonZeroExitCode"
    result = await ws_exec(operator_api, ns, name, SIDECAR, ["sh", "-c", "exit 3"])
    assert result.exit_code == 3

    # Exec into a container name the pod does not have: refused by the API server before any upgrade.
    path = f"/api/v1/namespaces/{ns}/pods/{name}/exec?container=nope&command=true&stdout=true"
    code, text, _ = await raw_request(operator_api, "GET", path, ws_upgrade=True)
    facts["exec_unknown_container"] = {"http_status": code, "body": _json_or_text(text)}
    assert code == 400

    # Exec into a finished pod.
    await v1.patch_namespaced_pod(
        name, ns, {"metadata": {"annotations": {ANN + "duration": "0s", ANN + "sidecar-stopped": "true"}}}
    )
    cluster.sidecar_stop_marker(name).touch()
    await wait_for_pod(operator_api, ns, name, _phase("Succeeded"), what="phase Succeeded", timeout=70)
    # v1.36 upgrades the WebSocket first (101) and reports any refusal as a Status on channel 3.
    code, text, _ = await raw_request(
        operator_api,
        "GET",
        f"/api/v1/namespaces/{ns}/pods/{name}/exec?container={SIDECAR}&command=true&stdout=true",
        ws_upgrade=True,
    )
    assert code == 101
    result = await ws_exec(operator_api, ns, name, SIDECAR, ["true"])
    facts["exec_into_completed_pod"] = {"http_status": code, "status": result.status, "stderr": result.stderr}
    assert result.status is not None and result.status["status"] == "Failure"
    # The API server forwards it (the "completed pod" refusal is kubectl's, client side); the node
    # refuses: kwok is patched to answer like a container runtime (wording approximated).
    assert "CONTAINER_EXITED" in result.status["message"]


async def test_operator_exec_code_reads_xcom_and_stops_the_sidecar_with_least_privilege(
    cluster: Cluster, operator_api, pod_name, cleanup_pods
):
    """kpo-async's own XCom/exec code (kpo_async.xcom) against the real API server and kwok node,
    with the operator's ServiceAccount; and its error when pods/exec is not granted."""
    from kpo_async.clients import open_client
    from kpo_async.connection import ClusterRef
    from kpo_async.xcom import read_xcom, stop_sidecar

    ns = cluster.namespace
    ok, missing = pod_name("opx"), pod_name("opx-missing")
    cleanup_pods.extend([ok, missing])
    cluster.write_xcom(ok, '{"answer": 42}')
    v1 = client.CoreV1Api(operator_api)
    for name in (ok, missing):
        await v1.create_namespaced_pod(ns, pod_manifest(name, {ANN + "duration": "1s"}))
    for name in (ok, missing):
        await wait_for_pod(operator_api, ns, name, _base_terminated, what="base terminated")

    async with open_client(ClusterRef(config_file=str(cluster.missing_perm_kubeconfig))) as kc:
        with pytest.raises(Exception) as exc:
            await read_xcom(kc, ns, ok)
        assert "403" in str(exc.value) and "pods/exec" in str(exc.value), str(exc.value)

    async with open_client(ClusterRef(config_file=str(cluster.operator_kubeconfig))) as kc:
        assert await read_xcom(kc, ns, ok) == {"answer": 42}
        # No return.json: None, as the official operator (issue 11), not an error.
        assert await read_xcom(kc, ns, missing) is None
        await stop_sidecar(kc, ns, ok)

    pod = await wait_for_pod(operator_api, ns, ok, _phase("Succeeded"), what="phase Succeeded")
    assert container_status(pod, SIDECAR).state.terminated.reason == "Completed"


async def test_log_follow_ends_when_the_pod_is_deleted(
    cluster: Cluster, operator_api, pod_name, cleanup_pods
):
    ns, name = cluster.namespace, pod_name("del")
    cleanup_pods.append(name)
    cluster.write_log(name, ["before delete"])
    v1 = client.CoreV1Api(operator_api)
    await v1.create_namespaced_pod(ns, pod_manifest(name, {ANN + "duration": "600s"}))
    await wait_for_pod(operator_api, ns, name, _phase("Running"), what="phase Running")
    follow = asyncio.create_task(
        stream_lines(operator_api, f"/api/v1/namespaces/{ns}/pods/{name}/log?container=base&follow=true")
    )
    await asyncio.sleep(0.5)
    await v1.delete_namespaced_pod(name, ns)
    code, lines = await asyncio.wait_for(follow, 15)
    assert (code, lines) == (200, ["before delete"])
