"""The simulated scheduler + kubelet: phases, container statuses, init containers, scheduling,
image pulls, deletion, eviction, restarts, volumes, behaviour annotation, events."""

from __future__ import annotations

import json
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.identity import XCOM_SIDECAR_NAME
from kpo_async.testing.sim import SimCluster
from kpo_async.testing.sim.control import SimControl

from .conftest import base_done_sidecar_running, cstatus, pod_manifest, run_exec, wait_for, wait_phase

BEHAVIOR = "sim.kpo-async.io/behavior"


async def raw_pod(v1: client.CoreV1Api, name: str, ns: str = "default") -> dict[str, Any]:
    resp = await v1.read_namespaced_pod(name, ns, _preload_content=False)
    return json.loads(await resp.read())


async def events_for(v1: client.CoreV1Api, name: str) -> list[client.CoreV1Event]:
    return (await v1.list_namespaced_event("default", field_selector=f"involvedObject.name={name}")).items


async def test_statuses_through_a_successful_run(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    cluster.config.sandbox_delay = (0.3, 0.3)
    await v1.create_namespaced_pod("default", pod_manifest("ok", "echo done; sleep 0.3"))
    pending = await wait_for(lambda: raw_pod(v1, "ok"), lambda p: "containerStatuses" in p["status"])
    st = pending["status"]
    assert st["phase"] == "Pending" and st["hostIP"] == "127.0.0.1" and st["startTime"]
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert st["containerStatuses"][0]["ready"] is False and st["containerStatuses"][0]["restartCount"] == 0
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["PodScheduled"]["status"] == "True"
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "ContainersNotReady"
    assert conds["Ready"]["message"] == "containers with unready status: [base]"

    running = await wait_for(lambda: raw_pod(v1, "ok"), lambda p: p["status"]["phase"] == "Running")
    cs = running["status"]["containerStatuses"][0]
    assert cs["ready"] is True and cs["started"] is True
    assert cs["containerID"].startswith("containerd://") and len(cs["containerID"]) == 13 + 64
    assert cs["image"] == "docker.io/library/alpine:3.20"
    assert cs["imageID"].startswith("docker.io/library/alpine@sha256:")
    assert running["status"]["podIP"].startswith("127.0.")
    assert {c["type"]: c["status"] for c in running["status"]["conditions"]} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }

    done = await wait_for(lambda: raw_pod(v1, "ok"), lambda p: p["status"]["phase"] == "Succeeded")
    term = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert term["startedAt"] <= term["finishedAt"] and term["containerID"] == cs["containerID"]
    conds = {c["type"]: c for c in done["status"]["conditions"]}
    assert conds["Ready"]["reason"] == "PodCompleted"


async def test_failed_and_oomkilled(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("bad", "echo boom >&2; exit 2"))
    pod = await wait_phase(v1, "bad", ("Failed",))
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 2 and term.reason == "Error"
    behaviour = {"duration_seconds": 0.1, "exit_code": 137, "reason": "OOMKilled"}
    await v1.create_namespaced_pod(
        "default", pod_manifest("oom", None, annotations={BEHAVIOR: json.dumps(behaviour)})
    )
    pod = await wait_phase(v1, "oom", ("Failed",))
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 137 and term.reason == "OOMKilled"


async def test_unknown_command_and_unsupported_syntax(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("nf", "echo before; ruby -e 1; exit $?"))
    pod = await wait_phase(v1, "nf", ("Failed",))
    assert pod.status.container_statuses[0].state.terminated.exit_code == 127
    assert await v1.read_namespaced_pod_log("nf", "default") == "before\nsh: ruby: not found\n"
    await v1.create_namespaced_pod("default", pod_manifest("us", "case $x in a) echo a;; esac"))
    pod = await wait_phase(v1, "us", ("Failed",))
    assert pod.status.container_statuses[0].state.terminated.exit_code == 127
    assert "not supported by the kpo-async simulator" in await v1.read_namespaced_pod_log("us", "default")
    manifest = pod_manifest("bare", None)
    manifest["spec"]["containers"][0]["command"] = ["ruby", "main.rb"]
    await v1.create_namespaced_pod("default", manifest)
    pod = await wait_phase(v1, "bare", ("Failed",))
    assert pod.status.container_statuses[0].state.terminated.exit_code == 127


async def test_xtrace_and_env(v1: client.CoreV1Api) -> None:
    manifest = pod_manifest("env", None)
    manifest["spec"]["containers"][0].update(
        command=["bash", "-cx"],
        args=['echo "$GREETING from $POD_NAME in $POD_NS ($(GREETING))"'],
        env=[
            {"name": "GREETING", "value": "hi"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
    )
    await v1.create_namespaced_pod("default", manifest)
    await wait_phase(v1, "env", ("Succeeded",))
    log = await v1.read_namespaced_pod_log("env", "default")
    assert log == "+ echo 'hi from env in default (hi)'\nhi from env in default (hi)\n"


async def test_no_command_exits_zero(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("noop", None))
    pod = await wait_phase(v1, "noop", ("Succeeded",))
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


async def test_init_containers(v1: client.CoreV1Api) -> None:
    manifest = pod_manifest("init", "cat /airflow/xcom/seed")
    manifest["spec"]["initContainers"] = [
        {
            "name": "seed",
            "image": "alpine:3.20",
            "command": ["sh", "-c", "echo seeded > /airflow/xcom/seed"],
            "volumeMounts": [{"name": "xcom", "mountPath": "/airflow/xcom"}],
        }
    ]
    await v1.create_namespaced_pod("default", manifest)
    pod = await wait_phase(v1, "init", ("Succeeded",))
    assert pod.status.init_container_statuses[0].state.terminated.reason == "Completed"
    assert await v1.read_namespaced_pod_log("init", "default") == "seeded\n"
    assert await v1.read_namespaced_pod_log("init", "default", container="seed") == ""

    manifest = pod_manifest("initfail", "echo never")
    manifest["spec"]["initContainers"] = [
        {"name": "fail", "image": "alpine:3.20", "command": ["sh", "-c", "exit 1"]}
    ]
    await v1.create_namespaced_pod("default", manifest)
    pod = await wait_phase(v1, "initfail", ("Failed",))
    assert pod.status.init_container_statuses[0].state.terminated.exit_code == 1
    assert pod.status.container_statuses[0].state.waiting.reason == "PodInitializing"


async def test_unschedulable(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("sel", "true", nodeSelector={"disktype": "ssd"}))
    big = pod_manifest("big", "true")
    big["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100", "memory": "1Gi"}}
    await v1.create_namespaced_pod("default", big)
    gpu = pod_manifest("gpu", "true")
    gpu["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    await v1.create_namespaced_pod("default", gpu)
    for name, reason in (
        ("sel", "1 node(s) didn't match Pod's node affinity/selector."),
        ("big", "1 Insufficient cpu."),
        ("gpu", "1 Insufficient nvidia.com/gpu."),
    ):
        evs = await wait_for(
            lambda n=name: events_for(v1, n), lambda e: any(x.reason == "FailedScheduling" for x in e)
        )
        ev = next(x for x in evs if x.reason == "FailedScheduling")
        assert ev.type == "Warning" and ev.message.startswith(f"0/1 nodes are available: {reason}")
        pod = await v1.read_namespaced_pod(name, "default")
        assert pod.status.phase == "Pending" and not pod.spec.node_name
        cond = next(c for c in pod.status.conditions if c.type == "PodScheduled")
        assert cond.status == "False" and cond.reason == "Unschedulable" and cond.message == ev.message
    fits = pod_manifest("fits", "true", nodeSelector={"kubernetes.io/os": "linux"})
    await v1.create_namespaced_pod("default", fits)
    await wait_phase(v1, "fits", ("Succeeded",))


async def test_image_pull_failure(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("pull", "true", image="registry.invalid/nope:1"))
    pod = await wait_for(
        lambda: v1.read_namespaced_pod("pull", "default"),
        lambda p: (
            p.status.container_statuses
            and p.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"
        ),
    )
    assert pod.status.phase == "Pending"
    assert (
        pod.status.container_statuses[0].state.waiting.message
        == 'Back-off pulling image "registry.invalid/nope:1"'
    )
    evs = await events_for(v1, "pull")
    by_reason = {(e.reason, e.message.split(":")[0]) for e in evs}
    assert ("Pulling", 'Pulling image "registry.invalid/nope') in by_reason
    assert ("Failed", 'Failed to pull image "registry.invalid/nope') in by_reason
    assert ("Failed", "Error") in by_reason
    assert any(
        e.reason == "BackOff" and e.message == 'Back-off pulling image "registry.invalid/nope:1"' for e in evs
    )
    failed = next(e for e in evs if e.message.startswith("Failed to pull image"))
    assert "no such host" in failed.message and failed.type == "Warning"
    assert failed.involved_object.field_path == "spec.containers{base}"


async def test_delete_runs_trap_then_pod_disappears(v1: client.CoreV1Api) -> None:
    script = "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done"
    await v1.create_namespaced_pod("default", pod_manifest("tr", script))
    await wait_phase(v1, "tr", ("Running",))
    await wait_for(lambda: v1.read_namespaced_pod_log("tr", "default"), lambda log: log == "ready\n")
    resp = await v1.list_namespaced_pod(
        "default", watch=True, field_selector="metadata.name=tr", timeout_seconds=5, _preload_content=False
    )
    await v1.delete_namespaced_pod("tr", "default")
    last = None
    while True:
        line = await resp.content.readline()
        if not line:
            break
        ev = json.loads(line)
        last = ev
        if ev["type"] == "DELETED":
            break
    resp.release()
    assert last is not None and last["type"] == "DELETED"
    term = last["object"]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0
    assert last["object"]["metadata"]["deletionTimestamp"]
    evs = await events_for(v1, "tr")
    assert any(e.reason == "Killing" and e.message == "Stopping container base" for e in evs)


async def test_delete_without_trap_kills_with_143(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("nt", "sleep 60"))
    await wait_phase(v1, "nt", ("Running",))
    resp = await v1.list_namespaced_pod(
        "default", watch=True, field_selector="metadata.name=nt", timeout_seconds=5, _preload_content=False
    )
    await v1.delete_namespaced_pod("nt", "default", grace_period_seconds=5)
    while True:
        ev = json.loads(await resp.content.readline())
        if ev["type"] == "DELETED":
            break
    resp.release()
    term = ev["object"]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 143 and term["reason"] == "Error"
    assert ev["object"]["status"]["phase"] == "Failed"


async def test_eviction(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("ev1", "sleep 60", sidecar=True))
    await wait_phase(v1, "ev1", ("Running",))
    cluster.evict("default", "ev1")
    pod = await wait_phase(v1, "ev1", ("Failed",))
    assert pod.status.reason == "Evicted"
    assert pod.status.message.startswith("The node was low on resource: memory.")
    assert all(
        c.state.terminated and c.state.terminated.exit_code == 137 for c in pod.status.container_statuses
    )
    assert any(c.type == "DisruptionTarget" and c.status == "True" for c in pod.status.conditions)
    # over HTTP for other processes
    await v1.create_namespaced_pod("default", pod_manifest("ev2", "sleep 60"))
    await wait_phase(v1, "ev2", ("Running",))
    async with SimControl(cluster.kubeconfig_path) as ctl:
        await ctl.evict("default", "ev2", message="Pod ephemeral local storage usage exceeds the total limit")
    pod = await wait_phase(v1, "ev2", ("Failed",))
    assert pod.status.message == "Pod ephemeral local storage usage exceeds the total limit"
    assert any(e.reason == "Evicted" for e in await events_for(v1, "ev2"))


async def test_signal_container_oomkilled_over_control(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("sig", "sleep 60", sidecar=True))
    await wait_phase(v1, "sig", ("Running",))
    async with SimControl(cluster.kubeconfig_path) as ctl:
        await ctl.signal("default", "sig", "base", "KILL", reason="OOMKilled")
    pod = await wait_for(
        lambda: v1.read_namespaced_pod("sig", "default"),
        lambda p: cstatus(p, "base").state.terminated is not None,
    )
    term = cstatus(pod, "base").state.terminated
    assert term.exit_code == 137 and term.reason == "OOMKilled"
    assert cstatus(pod, "airflow-xcom-sidecar").state.running is not None  # sidecar keeps running
    # the kubelet lists container statuses sorted by name
    assert [c.name for c in pod.status.container_statuses] == ["airflow-xcom-sidecar", "base"]


async def test_restart_policy_on_failure(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod(
        "default", pod_manifest("crash", "echo x; exit 1", restart_policy="OnFailure")
    )
    pod = await wait_for(
        lambda: v1.read_namespaced_pod("crash", "default"),
        lambda p: p.status.container_statuses and p.status.container_statuses[0].restart_count >= 2,
    )
    assert pod.status.phase == "Running"
    evs = await events_for(v1, "crash")
    assert any(
        e.reason == "BackOff" and e.message.startswith("Back-off restarting failed container base")
        for e in evs
    )


async def test_behaviour_xcom_and_sidecar(v1: client.CoreV1Api, ws_v1: client.CoreV1Api) -> None:
    behaviour = {"duration_seconds": 0.2, "log_lines_per_second": 10, "xcom": {"rows": 3}}
    await v1.create_namespaced_pod(
        "default", pod_manifest("bx", None, sidecar=True, annotations={BEHAVIOR: json.dumps(behaviour)})
    )
    await wait_for(
        lambda: v1.read_namespaced_pod("bx", "default"),
        base_done_sidecar_running,  # the sidecar may start later
    )
    data, _, _ = await run_exec(ws_v1, "bx", ["cat", "/airflow/xcom/return.json"], XCOM_SIDECAR_NAME)
    assert json.loads(data) == {"rows": 3}
    assert await v1.read_namespaced_pod_log("bx", "default", container="base") == "line 1\nline 2\n"


async def test_bad_behaviour_annotation_is_invalid(v1: client.CoreV1Api) -> None:
    try:
        await v1.create_namespaced_pod(
            "default", pod_manifest("bb", None, annotations={BEHAVIOR: '{"nope": 1}'})
        )
    except ApiException as e:
        assert e.status == 422 and "kpo-async sim behaviour" in e.body
    else:
        raise AssertionError("expected 422")


async def test_termination_message_and_deadline(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod(
        "default", pod_manifest("tm", "echo 'it broke' > /dev/termination-log; exit 3")
    )
    pod = await wait_phase(v1, "tm", ("Failed",))
    assert pod.status.container_statuses[0].state.terminated.message == "it broke\n"
    await v1.create_namespaced_pod("default", pod_manifest("dl", "sleep 60", activeDeadlineSeconds=1))
    pod = await wait_phase(v1, "dl", ("Failed",), timeout=10)
    assert pod.status.reason == "DeadlineExceeded"


async def test_events_watch_and_all_namespaces(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("airflow", pod_manifest("ns-ev", "true"))
    await wait_phase(v1, "ns-ev", ("Succeeded",), ns="airflow")
    evs = await v1.list_event_for_all_namespaces(field_selector="involvedObject.namespace=airflow")
    assert {e.reason for e in evs.items} >= {"Scheduled", "Pulled", "Created", "Started"}
    assert all(e.involved_object.kind == "Pod" and e.involved_object.uid for e in evs.items)
    scheduled = next(e for e in evs.items if e.reason == "Scheduled")
    assert scheduled.source.component == "default-scheduler"
    assert scheduled.message == "Successfully assigned airflow/ns-ev to sim-node"
