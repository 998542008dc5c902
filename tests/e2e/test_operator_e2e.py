"""The operator end to end against the real control plane, with the least-privilege ServiceAccount.

Each test runs `AsyncKubernetesPodOperator` as Airflow would: `execute` really raises TaskDeferred, the
trigger is re-created from its serialized form and run to its event in a fresh event loop (as on the
triggerer), and `execute_complete` finalizes. The operator uses `operator.kubeconfig` (ServiceAccount
kpo-async-e2e/kpo-async, the Role of docs/rbac.md) or `missing-perm.kubeconfig`; the tests check the
cluster afterwards with the admin kubeconfig.

Pods either run a shell script that tools/kwok/podfiles.py emulates (no kwok annotations: output, exit
code, duration and files come from the script) or carry `kwok.kpo-async.io/*` annotations.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client
from structlog.testing import capture_logs

from kpo_async import AsyncKubernetesPodOperator
from kpo_async.airflow_compat import TaskDeferred
from kpo_async.errors import PodFailedError
from kpo_async.log_follower import ContainerFollower, PodLogs
from kpo_async.logs import LogCursor
from kpo_async.pods import FINALIZED_LABEL
from kpo_async.testing import harness, logcapture, procs
from kpo_async.testing.harness import submit
from kpo_async.trigger_settings import MonitorSettings
from tests.e2e.conftest import (
    ANN,
    REPO,
    Cluster,
    emulation_record,
    live_pods,
    raw_request,
    stream_lines,
    wait_for_pod,
)

pytestmark = pytest.mark.e2e


# ---------------------------------------------------------------------------------------------------
# Harness: what Airflow does around the operator


def FakeTI(task_id: str, try_number: int = 1, run_id: str | None = None) -> harness.FakeTI:
    """The task instance; a fresh run_id per test keeps pods apart."""
    run_id = run_id or f"e2e-{uuid.uuid4().hex[:10]}"
    return harness.FakeTI(task_id, try_number, dag_id="kpo_async_e2e", run_id=run_id)


#: The harness's operator (its first argument a kubeconfig path) in the e2e namespace.
make_operator = functools.partial(
    harness.make_operator, namespace="kpo-async-e2e", startup_timeout_seconds=60
)


def resume(op: AsyncKubernetesPodOperator, ti: harness.FakeTI, deferred: TaskDeferred) -> Any:
    return harness.resume(op, ti, deferred, timeout=90)[1]


def run_task(op: AsyncKubernetesPodOperator, ti: harness.FakeTI | None = None) -> Any:
    return harness.run_task(op, ti or FakeTI(op.task_id), timeout=90)[1]


def pod_lines(logs: list[dict[str, Any]]) -> list[str]:
    return logcapture.pod_lines(logs)


def task_selector(ti: FakeTI) -> str:
    return f"run_id={ti.run_id}"


def delete_now(cluster: Cluster, name: str) -> None:
    cluster.run_kubectl("delete", "pod", "-n", cluster.namespace, name, "--grace-period=0", "--wait=false")


def assert_no_pod_left(cluster: Cluster, ti: FakeTI) -> None:
    assert live_pods(cluster, task_selector(ti)) == [], "the task left a pod behind"


def base_state(pod: dict[str, Any]) -> dict[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status["name"] == "base":
            return status.get("state") or {}
    return {}


# ---------------------------------------------------------------------------------------------------
# Found here: the log request's media type (kpo_async sent text/plain, which v1.36 refuses with 406)


@pytest.mark.kwok_only
async def test_log_request_is_accepted_by_the_real_api_server(
    cluster: Cluster, operator_api, pod_name, cleanup_pods, observed_facts
) -> None:
    """kpo_async's log reader, unpatched, reads a container log from kube-apiserver v1.36."""
    ns, name = cluster.namespace, pod_name("accept")
    cleanup_pods.append(name)
    cluster.write_log(name, ["a line"])
    await client.CoreV1Api(operator_api).create_namespaced_pod(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": {ANN + "duration": "30s", ANN + "pending": "0s"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "base", "image": "alpine:3.20"}]},
        },
    )
    path = f"/api/v1/namespaces/{ns}/pods/{name}/log?container=base"
    deadline = time.monotonic() + 20
    while True:  # until the container runs
        code, text, _ = await raw_request(operator_api, "GET", path, headers={"Accept": "*/*"})
        if code == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert (code, text) == (200, "a line\n")
    code, text, _ = await raw_request(operator_api, "GET", path, headers={"Accept": "text/plain"})
    observed_facts["log_with_accept_text_plain"] = {
        "code": code,
        "body": json.loads(text) if code != 200 else text,
    }
    assert code == 406 and json.loads(text)["reason"] == "NotAcceptable", "the real server changed its mind"

    lines: list[str] = []
    from kpo_async.clients import open_client
    from kpo_async.connection import ClusterRef

    async with open_client(ClusterRef(config_file=str(cluster.operator_kubeconfig))) as kpo:
        logger = logging.getLogger(__name__)
        logs = PodLogs(kpo, ns, name, MonitorSettings(), None, logger=logger, state=lambda: None)
        logs.line_listener = lambda _container, line: lines.append(line)
        await ContainerFollower(logs, "base", LogCursor()).read(follow=False)
    assert lines == ["a line"]


# ---------------------------------------------------------------------------------------------------
# Success, failure, startup problems


def test_success_streams_logs_and_pushes_xcom(cluster: Cluster) -> None:
    """No kwok annotations: podfiles emulates the script (lines, sleeps, the XCom file)."""
    op = make_operator(
        cluster.operator_kubeconfig,
        name="success",
        cmds=["sh", "-c"],
        do_xcom_push=True,
        arguments=[
            'for i in 1 2 3; do echo "line $i"; sleep 0.5; done; '
            "echo '{\"rows\": 3}' > /airflow/xcom/return.json"
        ],
    )
    ti = FakeTI(op.task_id)
    deferred = submit(op, ti)
    pod = deferred.trigger.pod_name
    started = time.monotonic()
    with capture_logs() as logs:
        result = resume(op, ti, deferred)
    assert result == {"rows": 3}
    assert pod_lines(logs) == ["line 1", "line 2", "line 3"]
    assert time.monotonic() - started < 30
    assert pod in json.dumps(ti.xcoms)  # the pod is recorded for the task (its link / XCom)
    assert_no_pod_left(cluster, ti)  # on_finish_action=delete_pod


@pytest.mark.parametrize("how", [pytest.param("annotations", marks=pytest.mark.kwok_only), "emulated"])
def test_failure_reports_exit_code_reason_and_log_tail(cluster: Cluster, how: str) -> None:
    if how == "annotations":
        kwargs: dict[str, Any] = {
            "annotations": {
                ANN + "duration": "1s",
                ANN + "exit-code": "3",
                ANN + "reason": "Error",
                ANN + "message": "boom: the task failed",
                ANN + "logs": "starting\nabout to fail",
            }
        }
    else:
        kwargs = {
            "cmds": ["sh", "-c"],
            "arguments": ["echo starting; sleep 0.3; echo about to fail >&2; exit 3"],
        }
    op = make_operator(cluster.operator_kubeconfig, name=f"fail-{how}", **kwargs)
    ti = FakeTI(op.task_id)
    with pytest.raises(PodFailedError) as info:
        run_task(op, ti)
    message = str(info.value)
    assert "exited with code 3" in message
    assert "(Error)" in message
    if how == "annotations":
        assert "boom: the task failed" in message
    assert message.endswith("Last log lines:\nstarting\nabout to fail")
    assert_no_pod_left(cluster, ti)


def test_image_pull_failure_fails_fast(cluster: Cluster) -> None:
    op = make_operator(
        cluster.operator_kubeconfig,
        name="bad-image",
        image="registry.invalid/kpo-async/nope:1",
        startup_timeout_seconds=120,
    )
    ti = FakeTI(op.task_id)
    started = time.monotonic()
    with pytest.raises(PodFailedError) as info:
        run_task(op, ti)
    took = time.monotonic() - started
    message = str(info.value)
    assert "ImagePullBackOff" in message or "ErrImagePull" in message
    assert "registry.invalid" in message
    assert took < 30, (
        f"took {took:.1f}s: an image that cannot be pulled must not wait for the startup timeout"
    )
    assert_no_pod_left(cluster, ti)


def test_startup_timeout_names_failed_scheduling(cluster: Cluster) -> None:
    op = make_operator(
        cluster.operator_kubeconfig,
        name="unschedulable",
        node_selector={"disktype": "ssd"},
        startup_timeout_seconds=4,
    )
    ti = FakeTI(op.task_id)
    with pytest.raises(PodFailedError) as info:
        run_task(op, ti)
    message = str(info.value)
    assert "startup_timeout_seconds" in message
    assert "FailedScheduling" in message  # the real kube-scheduler's event
    assert "node(s) didn't match Pod's node affinity/selector" in message
    assert_no_pod_left(cluster, ti)


# ---------------------------------------------------------------------------------------------------
# on_finish_action


@pytest.mark.parametrize(
    ("action", "exit_code", "kept"),
    [
        ("delete_pod", 0, False),
        ("delete_pod", 1, False),
        ("keep_pod", 0, True),
        ("keep_pod", 1, True),
        ("delete_succeeded_pod", 0, False),
        ("delete_succeeded_pod", 1, True),
    ],
)
def test_on_finish_action(cluster: Cluster, action: str, exit_code: int, kept: bool) -> None:
    op = make_operator(
        cluster.operator_kubeconfig,
        name=f"finish-{action.replace('_', '-')}-{exit_code}",
        cmds=["sh", "-c"],
        arguments=[f"echo finishing; exit {exit_code}"],
        on_finish_action=action,
    )
    ti = FakeTI(op.task_id)
    if exit_code:
        with pytest.raises(PodFailedError):
            run_task(op, ti)
    else:
        run_task(op, ti)
    pods = live_pods(cluster, task_selector(ti))
    phase = "Succeeded" if exit_code == 0 else "Failed"

    def terminal() -> list[dict[str, Any]]:
        # A real kubelet reports the container terminated first and the pod's terminal phase only
        # after it stopped the sandbox (~1 s later); kwok does both at once.
        found = live_pods(cluster, task_selector(ti))
        return found if all(p["status"]["phase"] == phase for p in found) else []

    try:
        assert bool(pods) == kept
        if kept:
            pods = procs.wait_until(terminal, what=f"the kept pod to turn {phase}", first=0.2, most=0.2)
        for pod in pods:
            assert pod["metadata"]["labels"][FINALIZED_LABEL] == "true"
            assert pod["status"]["phase"] == phase
    finally:
        for pod in pods:
            delete_now(cluster, pod["metadata"]["name"])


# ---------------------------------------------------------------------------------------------------
# Worker restarts


def test_reattach_adopts_the_pod_of_an_interrupted_try(cluster: Cluster) -> None:
    kwargs = {"name": "reattach", "cmds": ["sh", "-c"], "arguments": ["sleep 2; echo done"]}
    run_id = f"e2e-{uuid.uuid4().hex[:10]}"
    first = submit(make_operator(cluster.operator_kubeconfig, **kwargs), FakeTI("reattach", 1, run_id))
    # The worker dies here, after the pod was created; Airflow retries the task as try 2.
    ti = FakeTI("reattach", 2, run_id)
    op = make_operator(cluster.operator_kubeconfig, **kwargs)
    with capture_logs() as logs:
        second = submit(op, ti)
    assert second.trigger.pod_name == first.trigger.pod_name
    assert any("reattaching to pod" in str(e.get("event")) for e in logs)
    assert [p["metadata"]["name"] for p in live_pods(cluster, task_selector(ti))] == [first.trigger.pod_name]
    with capture_logs() as logs:
        resume(op, ti, second)
    assert pod_lines(logs) == ["done"]
    assert_no_pod_left(cluster, ti)


def test_without_reattach_the_interrupted_trys_pod_is_deleted(cluster: Cluster) -> None:
    kwargs = {"name": "no-reattach", "cmds": ["sh", "-c"], "reattach_on_restart": False}
    run_id = f"e2e-{uuid.uuid4().hex[:10]}"
    first = submit(
        make_operator(cluster.operator_kubeconfig, arguments=["sleep 60"], **kwargs),
        FakeTI("no-reattach", 1, run_id),
    )
    ti = FakeTI("no-reattach", 2, run_id)
    op = make_operator(cluster.operator_kubeconfig, arguments=["echo quick"], **kwargs)
    second = submit(op, ti)
    assert second.trigger.pod_name != first.trigger.pod_name
    assert {p["metadata"]["name"] for p in live_pods(cluster, task_selector(ti))} == {second.trigger.pod_name}
    with capture_logs() as logs:
        resume(op, ti, second)
    assert pod_lines(logs) == ["quick"]
    assert_no_pod_left(cluster, ti)


def test_pod_deleted_from_outside_mid_run_is_a_clear_error(cluster: Cluster) -> None:
    op = make_operator(
        cluster.operator_kubeconfig,
        name="deleted-outside",
        cmds=["sh", "-c"],
        arguments=["echo working; sleep 60"],
    )
    ti = FakeTI(op.task_id)
    deferred = submit(op, ti)
    pod = deferred.trigger.pod_name

    def delete_when_running() -> None:
        def running() -> bool:
            found = [p for p in live_pods(cluster, task_selector(ti)) if p["metadata"]["name"] == pod]
            return bool(found) and "running" in base_state(found[0])

        procs.wait_until(running, what="the pod to run", first=0.2, most=0.2)
        time.sleep(0.5)
        out = cluster.run_kubectl("delete", "pod", "-n", cluster.namespace, pod, "--wait=false")
        assert out.returncode == 0, out.stderr

    deleter = threading.Thread(target=delete_when_running, daemon=True)
    deleter.start()
    started = time.monotonic()
    with capture_logs() as logs, pytest.raises(PodFailedError) as info:
        resume(op, ti, deferred)
    deleter.join(5)
    message = str(info.value)
    assert f"pod {cluster.namespace}/{pod} was deleted before its container finished" in message
    assert "working" in message  # the log tail up to then
    assert "working" in pod_lines(logs)
    assert time.monotonic() - started < 30
    assert_no_pod_left(cluster, ti)


# ---------------------------------------------------------------------------------------------------
# XCom


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("printf 'not json at all' > /airflow/xcom/return.json", "is not valid JSON"),
        ("printf '{\"a\": ' > /airflow/xcom/return.json", "is not valid JSON"),
    ],
    ids=["not-json", "truncated"],
)
def test_bad_xcom_fails_clearly_and_cleans_up(cluster: Cluster, script: str, expected: str) -> None:
    """A missing or empty file is None, as the official operator (tests/core, tests/reliability)."""
    op = make_operator(
        cluster.operator_kubeconfig,
        name="bad-xcom",
        cmds=["sh", "-c"],
        arguments=[f"echo working; {script}"],
        do_xcom_push=True,
    )
    ti = FakeTI(op.task_id)
    with pytest.raises(PodFailedError) as info:
        run_task(op, ti)
    message = str(info.value)
    assert expected in message
    assert "Fix:" in message
    assert_no_pod_left(cluster, ti)


# ---------------------------------------------------------------------------------------------------
# Least privilege (docs/rbac.md)


def test_without_pods_exec_an_xcom_task_names_the_permission_and_leaves_no_pod(cluster: Cluster) -> None:
    op = make_operator(
        cluster.missing_perm_kubeconfig,
        name="no-exec",
        cmds=["sh", "-c"],
        arguments=["echo '{\"a\": 1}' > /airflow/xcom/return.json"],
        do_xcom_push=True,
    )
    ti = FakeTI(op.task_id)
    deferred = submit(op, ti)
    started = time.monotonic()
    with pytest.raises(PodFailedError) as info:
        resume(op, ti, deferred)
    message = str(info.value)
    assert "pods/exec" in message
    assert "docs/rbac.md" in message
    assert "403" in message
    assert time.monotonic() - started < 30, "a 403 is not worth retrying"
    assert_no_pod_left(cluster, ti)  # checked with the admin kubeconfig


def _doctor(kubeconfig) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "kpo_async.cli",
            "doctor",
            "--config-file",
            str(kubeconfig),
            "--namespace",
            "kpo-async-e2e",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_doctor_reports_all_ok_for_the_operator_role(cluster: Cluster) -> None:
    out = _doctor(cluster.operator_kubeconfig)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "version: v1.36.3" in out.stdout
    assert "MISSING" not in out.stdout
    assert out.stdout.count("[ok]") == 10
    assert "OK: everything the operator needs is in place" in out.stdout


def test_doctor_reports_the_missing_pods_exec_permission(cluster: Cluster) -> None:
    out = _doctor(cluster.missing_perm_kubeconfig)
    assert out.returncode == 1, out.stdout + out.stderr
    missing = [line for line in out.stdout.splitlines() if "[MISSING]" in line]
    assert [line.split()[1:3] for line in missing] == [["create", "pods/exec"], ["get", "pods/exec"]]
    assert "missing permission: create pods/exec in namespace kpo-async-e2e" in out.stderr
    assert '"RBAC: the least privilege kpo-async needs" in the kpo-async documentation' in out.stdout


# ---------------------------------------------------------------------------------------------------
# The shell emulation itself (tools/kwok/podfiles.py): what the tests above rely on


@pytest.mark.kwok_only
async def test_emulated_pod_reports_the_scripts_exit_code_duration_and_output(
    cluster: Cluster, operator_api, pod_name, cleanup_pods
) -> None:
    ns, name = cluster.namespace, pod_name("emu")
    cleanup_pods.append(name)
    v1 = client.CoreV1Api(operator_api)
    await v1.create_namespaced_pod(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "base",
                        "image": "alpine:3.20",
                        "command": ["sh", "-c", 'echo "hi $WHO"; sleep 1.5; echo oops >&2; exit 7'],
                        "env": [{"name": "WHO", "value": "there"}],
                    }
                ],
            },
        },
    )

    async def finished() -> client.V1Pod:
        while True:
            pod = await v1.read_namespaced_pod(name, ns)
            if pod.status.phase == "Failed":
                return pod
            await asyncio.sleep(0.2)

    pod = await asyncio.wait_for(finished(), 30)
    ann = pod.metadata.annotations
    assert ann[ANN + "emulated"] == "true"
    assert (ann[ANN + "exit-code"], ann[ANN + "duration"]) == ("7", "1.500s")
    term = pod.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (7, "Error")
    code, text, _ = await raw_request(
        operator_api,
        "GET",
        f"/api/v1/namespaces/{ns}/pods/{name}/log?container=base",
        headers={"Accept": "*/*"},
    )
    assert (code, text.splitlines()) == (200, ["hi there", "oops"])
    record = emulation_record(cluster, name)
    assert record is not None and record["patch_status"] == 200
    # The annotations landed before kwok's default 2 s deadline could end the container.
    assert record["margin_seconds"] is None or record["margin_seconds"] > 0.1, record


# ---------------------------------------------------------------------------------------------------
# More real-server facts for the simulator comparison (docs/real-control-plane.md, "Simulator vs real
# API server"): recorded in build/e2e/observed-api-facts.json with the others; the parts the simulator
# gets wrong today are asserted here so that the real side of each row stays pinned.


async def test_more_observed_api_facts(
    cluster: Cluster, operator_api, pod_name, cleanup_pods, observed_facts
) -> None:
    ns = cluster.namespace
    pods = f"/api/v1/namespaces/{ns}/pods"
    facts = observed_facts
    json_ct = {"Content-Type": "application/json"}

    def body(name: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "base", "image": "alpine:3.20", "command": ["sh", "-c", "sleep 600"]}
                ],
                **spec,
            },
        }

    # A JSON body without Content-Type is refused.
    name = pod_name("noct")
    cleanup_pods.append(name)
    code, text, _ = await raw_request(operator_api, "POST", pods, body=body(name))
    facts["create_without_content_type_415"] = {"http_status": code, "body": json.loads(text)}
    assert (code, json.loads(text)["reason"]) == (415, "UnsupportedMediaType")

    # resourceVersionMatch without resourceVersion is invalid.
    code, text, _ = await raw_request(operator_api, "GET", f"{pods}?resourceVersionMatch=NotOlderThan")
    facts["list_resource_version_match_without_resource_version_422"] = json.loads(text)
    assert (code, json.loads(text)["details"]["kind"]) == (422, "ListOptions")

    # A resourceVersion from the future: the server waits (~3 s), then 504.
    code, text, _ = await raw_request(operator_api, "GET", f"{pods}?limit=1")
    rv = int(json.loads(text)["metadata"]["resourceVersion"])
    code, text, _ = await raw_request(
        operator_api, "GET", f"{pods}?resourceVersion={rv + 10**6}&resourceVersionMatch=NotOlderThan"
    )
    facts["list_future_resource_version_504"] = {"http_status": code, "body": json.loads(text)}
    assert code == 504 and json.loads(text)["message"].startswith("Timeout: Too large resource version: ")

    # An unparsable resourceVersion on a watch is a 500 without a reason (sic).
    code, text, _ = await raw_request(operator_api, "GET", f"{pods}?watch=1&resourceVersion=abc")
    facts["watch_unparsable_resource_version"] = {"http_status": code, "body": json.loads(text)}
    assert code == 500 and "reason" not in json.loads(text)

    # Label selector parse errors.
    for selector in ("app in (", "app=Bad_Value!"):
        code, text, _ = await raw_request(operator_api, "GET", f"{pods}?labelSelector={selector}")
        facts[f"label_selector_error {selector}"] = {
            "http_status": code,
            "message": json.loads(text)["message"],
        }
        assert code == 400

    # The initial-events-end bookmark of a watch-list: a Pod with empty spec and status.
    _, lines = await stream_lines(
        operator_api,
        f"{pods}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        "&fieldSelector=metadata.name=kpo-async-none&timeoutSeconds=1",
        max_lines=1,
        timeout=15,
    )
    bookmark = json.loads(lines[0])
    facts["watch_initial_events_end_bookmark"] = bookmark
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert (bookmark["object"]["spec"], bookmark["object"]["status"]) == ({"containers": None}, {})

    # Deleting a running pod with gracePeriodSeconds=0: the API server keeps it (deletionTimestamp,
    # grace 0) until the node confirms, so watchers see MODIFIED, then DELETED.
    name = pod_name("grace0")
    cleanup_pods.append(name)
    code, text, _ = await raw_request(operator_api, "POST", pods, body=body(name), headers=json_ct)
    assert code == 201, text
    await wait_for_pod(operator_api, ns, name, lambda p: p.status.phase == "Running", what="Running")
    code, text, _ = await raw_request(operator_api, "GET", f"{pods}/{name}")
    rv = json.loads(text)["metadata"]["resourceVersion"]
    watch = asyncio.create_task(
        stream_lines(
            operator_api,
            f"{pods}?watch=1&fieldSelector=metadata.name={name}&resourceVersion={rv}&timeoutSeconds=10",
            max_lines=2,
            timeout=20,
        )
    )
    await asyncio.sleep(0.3)
    code, text, _ = await raw_request(operator_api, "DELETE", f"{pods}/{name}?gracePeriodSeconds=0")
    meta = json.loads(text)["metadata"]
    events = [json.loads(line) for line in (await watch)[1]]
    facts["delete_running_pod_grace_0"] = {
        "http_status": code,
        "response_deletionGracePeriodSeconds": meta.get("deletionGracePeriodSeconds"),
        "response_has_deletionTimestamp": "deletionTimestamp" in meta,
        "watch_events": [
            (e["type"], e["object"]["metadata"].get("deletionGracePeriodSeconds")) for e in events
        ],
    }
    assert (code, meta.get("deletionGracePeriodSeconds"), "deletionTimestamp" in meta) == (200, 0, True)
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]

    # The scheduler's events are events.k8s.io/v1 events seen through core/v1: no count, no
    # first/lastTimestamp, an empty source, eventTime and reportingComponent set, action "Binding".
    code, text, _ = await raw_request(
        operator_api, "GET", f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name={name}"
    )
    scheduled = [e for e in json.loads(text)["items"] if e["reason"] == "Scheduled"]
    assert scheduled, text
    event = {k: v for k, v in scheduled[0].items() if k not in ("metadata", "involvedObject")}
    facts["scheduled_event_core_v1"] = event
    assert (event.get("count"), event["firstTimestamp"], event["lastTimestamp"], event["source"]) == (
        None,
        None,
        None,
        {},
    )
    assert (event["action"], event["reportingComponent"]) == ("Binding", "default-scheduler")
    assert event["eventTime"]
