"""What only a real kubelet and container runtime decide, on the real node (`make e2e-node`).

kwok cannot OOM-kill a container, run an init container, or exec into a process; these tests run
under `KPO_ASYNC_E2E_NODE=real` (tools/node.sh: kubelet + containerd + runc) and are skipped on kwok.
The rest of the e2e suite runs on the real node unchanged (docs/real-control-plane.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import pytest
from kubernetes.client import models as k8s
from kubernetes_asyncio import client
from structlog.testing import capture_logs

from kpo_async.errors import PodFailedError
from kpo_async.testing import harness
from tests.e2e.conftest import Cluster, raw_request, stream_lines, wait_for_pod, ws_exec
from tests.e2e.test_operator_e2e import (
    FakeTI,
    assert_no_pod_left,
    make_operator,
    pod_lines,
    resume,
    run_task,
    submit,
)

pytestmark = [pytest.mark.e2e, pytest.mark.real_node]


def test_memory_limit_ends_in_oomkilled(cluster: Cluster) -> None:
    op = make_operator(
        cluster.operator_kubeconfig,
        name="oom",
        cmds=["sh", "-c"],
        # `exec`: the shell itself becomes the process that grows, so the container's main process is
        # the one the kernel kills (exit 137), not a child.
        arguments=["echo filling memory; exec tail /dev/zero"],
        container_resources=k8s.V1ResourceRequirements(limits={"memory": "20Mi"}),
    )
    ti = FakeTI(op.task_id)
    with pytest.raises(PodFailedError) as info:
        run_task(op, ti)
    message = str(info.value)
    assert "exited with code 137 (OOMKilled)" in message
    assert "filling memory" in message  # the log tail
    assert_no_pod_left(cluster, ti)


def test_failed_init_container_is_named_with_its_exit_code(cluster: Cluster) -> None:
    op = make_operator(
        cluster.operator_kubeconfig,
        name="init-fails",
        cmds=["sh", "-c"],
        arguments=["echo never runs"],
        init_containers=[
            k8s.V1Container(
                name="prepare", image="alpine:3.20", command=["sh", "-c", "echo preparing; exit 4"]
            )
        ],
    )
    ti = FakeTI(op.task_id)
    started = time.monotonic()
    with pytest.raises(PodFailedError) as info:
        run_task(op, ti)
    message = str(info.value)
    assert "init container prepare exited with code 4" in message
    assert "never runs" not in message
    assert time.monotonic() - started < 30
    assert_no_pod_left(cluster, ti)


def test_triggerer_restart_resumes_the_log_after_the_last_delivered_line(cluster: Cluster) -> None:
    """The trigger is stopped mid-log (as a triggerer shutting down does) and re-created from its
    serialized kwargs: the second one continues after the last line the first delivered."""
    expected = [f"line {i}" for i in range(1, 13)]
    op = make_operator(
        cluster.operator_kubeconfig,
        name="restart",
        cmds=["sh", "-c"],
        arguments=['for i in $(seq 1 12); do echo "line $i"; sleep 0.5; done'],
    )
    ti = FakeTI(op.task_id)
    deferred = submit(op, ti)

    async def first_triggerer(logs: list) -> None:
        trigger = harness.trigger_from(*harness.stored_kwargs(deferred))
        task = asyncio.ensure_future(harness.first_event(trigger))
        deadline = time.monotonic() + 60
        while len(pod_lines(logs)) < 4:
            assert not task.done(), "the trigger ended before it was stopped"
            assert time.monotonic() < deadline, "no log lines from the first trigger"
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await harness.close_process_state()

    with capture_logs() as logs:
        asyncio.run(first_triggerer(logs))
    before = pod_lines(logs)
    with capture_logs() as logs:
        resume(op, ti, deferred)
    after = pod_lines(logs)
    assert 4 <= len(before) < len(expected), before
    assert before + after == expected
    assert_no_pod_left(cluster, ti)


async def test_exec_into_a_real_process_reports_streams_and_exit_code(
    cluster: Cluster, operator_api, pod_name, cleanup_pods
) -> None:
    ns, name = cluster.namespace, pod_name("exec")
    cleanup_pods.append(name)
    await client.CoreV1Api(operator_api).create_namespaced_pod(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "base", "image": "alpine:3.20", "command": ["sleep", "600"]}],
            },
        },
    )
    await wait_for_pod(operator_api, ns, name, lambda p: p.status.phase == "Running", 60, "Running")
    result = await ws_exec(operator_api, ns, name, "base", ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 7)
    result = await ws_exec(operator_api, ns, name, "base", ["cat", "/proc/1/cmdline"])
    assert (result.stdout, result.exit_code) == ("sleep\x00600\x00", 0)  # a real process, PID 1


REGISTRY = f"127.0.0.1:{os.environ.get('KPO_ASYNC_REGISTRY_PORT', '30500')}"  # tools/node.sh's registry


def test_image_pulled_from_the_loopback_registry_runs(cluster: Cluster) -> None:
    op = make_operator(
        cluster.operator_kubeconfig,
        name="pulled",
        image=f"{REGISTRY}/kpo-async/shell:1",
        image_pull_policy="Always",
        cmds=["sh", "-c"],
        arguments=["echo pulled and running"],
    )
    ti = FakeTI(op.task_id)
    with capture_logs() as logs:
        run_task(op, ti)
    assert pod_lines(logs) == ["pulled and running"]
    assert_no_pod_left(cluster, ti)


def test_missing_image_in_the_loopback_registry_fails_with_the_registrys_answer(cluster: Cluster) -> None:
    image = f"{REGISTRY}/kpo-async/missing:1"
    op = make_operator(cluster.operator_kubeconfig, name="missing", image=image, startup_timeout_seconds=120)
    ti = FakeTI(op.task_id)
    started = time.monotonic()
    with pytest.raises(PodFailedError) as info:
        run_task(op, ti)
    message = str(info.value)
    assert "ImagePullBackOff" in message or "ErrImagePull" in message
    assert image in message
    assert "not found" in message  # the registry answered: a real pull, not a refused connection
    assert time.monotonic() - started < 60
    assert_no_pod_left(cluster, ti)


async def test_observed_real_node_facts(
    cluster: Cluster, admin_api, pod_name, cleanup_pods, observed_facts
) -> None:
    """What the kubelet and containerd answer, recorded for docs/real-control-plane.md's table
    (build/e2e/observed-api-facts.json, key ``real_node``); the parts the operator relies on are asserted."""
    ns = cluster.namespace
    v1 = client.CoreV1Api(admin_api)
    facts: dict = {}
    observed_facts["real_node"] = facts

    # Status transitions of `echo hello; sleep 2; echo bye; exit 3`, and when a followed log ends.
    name = pod_name("facts")
    cleanup_pods.append(name)
    await v1.create_namespaced_pod(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "base",
                        "image": "alpine:3.20",
                        "command": ["sh", "-c", "echo hello; sleep 2; echo bye >&2; exit 3"],
                    }
                ],
            },
        },
    )
    seen: list[str] = []

    def record(pod: client.V1Pod) -> bool:
        s = pod.status
        state = "-"
        for cs in s.container_statuses or []:
            st = cs.state
            if st.waiting:
                state = f"waiting:{st.waiting.reason}"
            elif st.running:
                state = "running"
            elif st.terminated:
                state = f"terminated:{st.terminated.reason}:{st.terminated.exit_code}"
        entry = f"{s.phase}/{state}"
        if not seen or seen[-1] != entry:
            seen.append(entry)
        return state == "running" or s.phase in ("Succeeded", "Failed")

    await wait_for_pod(admin_api, ns, name, record, 60, "running")
    path = f"/api/v1/namespaces/{ns}/pods/{name}/log?container=base&follow=true&timestamps=true"
    code, lines = await stream_lines(admin_api, path, timeout=30)
    ended = time.time()
    pod = await wait_for_pod(admin_api, ns, name, lambda p: record(p) and p.status.phase == "Failed", 30)
    term = pod.status.container_statuses[0].state.terminated
    facts["status_sequence"] = seen
    facts["terminated"] = {"exit_code": term.exit_code, "reason": term.reason, "message": term.message}
    facts["followed_log"] = lines
    facts["follow_end_after_finish_s"] = round(ended - term.finished_at.timestamp(), 2)
    assert code == 200
    assert [line.split(" ", 1)[1] for line in lines] == ["hello", "bye"]
    assert (term.exit_code, term.reason) == (3, "Error")

    # Exec into the finished container, and `previous=true` without a restart.
    code, text, _ = await raw_request(
        admin_api,
        "GET",
        f"/api/v1/namespaces/{ns}/pods/{name}/exec?container=base&command=true&stdout=true",
        ws_upgrade=True,
    )
    facts["exec_into_finished_container"] = {"http_status": code, "body": text[:400]}
    code, text, _ = await raw_request(
        admin_api, "GET", f"/api/v1/namespaces/{ns}/pods/{name}/log?container=base&previous=true"
    )
    facts["log_previous_without_restart"] = {"http_status": code, "body": text[:400]}

    # The waiting message of an image that cannot be pulled (the refused loopback default registry).
    name = pod_name("nopull")
    cleanup_pods.append(name)
    await v1.create_namespaced_pod(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "base", "image": "registry.invalid/kpo-async/nope:1"}],
            },
        },
    )
    messages: dict[str, str] = {}

    def backoff(pod: client.V1Pod) -> bool:
        for cs in pod.status.container_statuses or []:
            if cs.state.waiting and cs.state.waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
                messages.setdefault(cs.state.waiting.reason, cs.state.waiting.message or "")
        return "ImagePullBackOff" in messages

    await wait_for_pod(admin_api, ns, name, backoff, 60, "ImagePullBackOff")
    facts["image_pull_waiting_messages"] = messages
    assert messages["ImagePullBackOff"].startswith(
        'Back-off pulling image "registry.invalid/kpo-async/nope:1"'
    )
