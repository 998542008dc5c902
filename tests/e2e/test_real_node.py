"""What only a real kubelet and container runtime decide, on the real node (`make e2e-node`).

kwok cannot OOM-kill a container, run an init container, or exec into a process; these tests run
under `KPO_ASYNC_E2E_NODE=real` (tools/node.sh: kubelet + containerd + runc) and are skipped on kwok.
The rest of the e2e suite runs on the real node unchanged (docs/real-control-plane.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from airflow.sdk.module_loading import import_string
from kubernetes.client import models as k8s
from kubernetes_asyncio import client
from structlog.testing import capture_logs

from kpo_async.errors import PodFailedError
from tests.e2e.conftest import Cluster, wait_for_pod, ws_exec
from tests.e2e.test_operator_e2e import (
    FakeTI,
    _first_event,
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
        classpath, kwargs = deferred.trigger.serialize()
        trigger = import_string(classpath)(**json.loads(json.dumps(kwargs)))
        task = asyncio.ensure_future(_first_event(trigger))
        deadline = time.monotonic() + 60
        while len(pod_lines(logs)) < 4:
            assert not task.done(), "the trigger ended before it was stopped"
            assert time.monotonic() < deadline, "no log lines from the first trigger"
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

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


REGISTRY = "127.0.0.1:30500"  # tools/node.sh's registry (KPO_ASYNC_REGISTRY_PORT)


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
