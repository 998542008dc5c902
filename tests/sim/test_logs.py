"""pods/log: container choice, follow, timestamps, since*, tailLines, limitBytes, previous, 400s."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kpo_async.testing.sim import SimCluster

from .conftest import pod_manifest, raw_request, wait_for, wait_phase

TS = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


async def raw_log(v1: client.CoreV1Api, name: str, **kw: object) -> bytes:
    resp = await v1.read_namespaced_pod_log(name, "default", _preload_content=False, **kw)
    return await resp.read()


async def since_time_log(cluster: SimCluster, name: str, since: str, **params: str) -> bytes:
    # kubernetes_asyncio's read_namespaced_pod_log has no since_time parameter; kubectl sends it
    status, _, body = await raw_request(
        cluster, "GET", f"/api/v1/namespaces/default/pods/{name}/log", {"sinceTime": since, **params}
    )
    assert status == 200, body
    return body


async def error_of(coro: object) -> dict:
    with pytest.raises(ApiException) as e:
        await coro  # type: ignore[misc]
    assert e.value.status == 400
    return json.loads(e.value.body)


async def test_logs_options(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    script = 'for i in $(seq 1 5); do echo "line $i"; done; echo err >&2'
    await v1.create_namespaced_pod("default", pod_manifest("l1", script))
    await wait_phase(v1, "l1", ("Succeeded",))
    assert await raw_log(v1, "l1") == b"line 1\nline 2\nline 3\nline 4\nline 5\nerr\n"
    assert await raw_log(v1, "l1", tail_lines=2) == b"line 5\nerr\n"
    assert await raw_log(v1, "l1", limit_bytes=9) == b"line 1\nli"
    stamped = (await raw_log(v1, "l1", timestamps=True)).splitlines()
    assert len(stamped) == 6 and all(TS.match(line) for line in stamped)
    assert stamped[0].endswith(b" line 1")
    assert await raw_log(v1, "l1", since_seconds=3600) == await raw_log(v1, "l1")
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 5))
    assert await since_time_log(cluster, "l1", future) == b""
    assert await raw_log(v1, "l1", stream="Stderr") == b"err\n"
    assert await raw_log(v1, "l1", stream="Stdout", limit_bytes=7) == b"line 1\n"


async def test_since_time_truncated_to_seconds(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("l2", "echo a; sleep 1.2; echo b"))
    await wait_phase(v1, "l2", ("Succeeded",))
    lines = (await raw_log(v1, "l2", timestamps=True)).splitlines()
    second_ts = lines[1].split(b" ")[0].decode()
    # sinceTime with the exact nanosecond of line b: the server keeps whole seconds, so it is included
    assert (await since_time_log(cluster, "l2", second_ts)).endswith(b"b\n")
    first_ts = lines[0].split(b" ")[0].decode()
    assert await since_time_log(cluster, "l2", first_ts[:19] + "Z") == b"a\nb\n"
    assert await since_time_log(cluster, "l2", second_ts[:19] + ".999Z") == b"b\n"


async def test_follow_streams_until_container_terminates(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod(
        "default", pod_manifest("f1", "for i in 1 2 3; do echo tick $i; sleep 0.3; done")
    )
    await wait_phase(v1, "f1", ("Running",))
    resp = await v1.read_namespaced_pod_log("f1", "default", follow=True, _preload_content=False)
    t0 = time.monotonic()
    chunks = []
    while True:
        line = await asyncio.wait_for(resp.content.readline(), 5)
        if not line:
            break
        chunks.append(line)
    assert chunks == [b"tick 1\n", b"tick 2\n", b"tick 3\n"]
    assert time.monotonic() - t0 > 0.5


async def test_waiting_container_400(v1: client.CoreV1Api, cluster) -> None:  # type: ignore[no-untyped-def]
    cluster.config.sandbox_delay = (1.0, 1.0)
    await v1.create_namespaced_pod("default", pod_manifest("wt", "echo x"))
    await wait_for(lambda: v1.read_namespaced_pod("wt", "default"), lambda p: p.status.container_statuses)
    body = await error_of(v1.read_namespaced_pod_log("wt", "default"))
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'container "base" in pod "wt" is waiting to start: ContainerCreating',
        "reason": "BadRequest",
        "code": 400,
    }


async def test_image_pull_failure_400(v1: client.CoreV1Api, cluster: SimCluster) -> None:
    cluster.config.backoff_initial = 1.0  # keep ErrImagePull visible long enough to look at it
    await v1.create_namespaced_pod("default", pod_manifest("ip", "echo x", image="registry.invalid/nope:1"))

    def waiting(reason: str):  # type: ignore[no-untyped-def]
        return lambda p: (
            p.status.container_statuses and p.status.container_statuses[0].state.waiting.reason == reason
        )

    await wait_for(lambda: v1.read_namespaced_pod("ip", "default"), waiting("ErrImagePull"), interval=0.01)
    body = await error_of(v1.read_namespaced_pod_log("ip", "default"))
    # the kubelet's wording, which maps the two reasons this way round
    assert body["message"] == 'container "base" in pod "ip" is waiting to start: image can\'t be pulled'
    await wait_for(lambda: v1.read_namespaced_pod("ip", "default"), waiting("ImagePullBackOff"))
    body = await error_of(v1.read_namespaced_pod_log("ip", "default"))
    assert (
        body["message"]
        == 'container "base" in pod "ip" is waiting to start: trying and failing to pull image'
    )


async def test_container_name_required_and_previous(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("mc", "echo x", sidecar=True))
    await wait_phase(v1, "mc", ("Running",))
    body = await error_of(v1.read_namespaced_pod_log("mc", "default"))
    assert (
        body["message"]
        == "a container name must be specified for pod mc, choose one of: [base airflow-xcom-sidecar]"
    )
    body = await error_of(v1.read_namespaced_pod_log("mc", "default", container="nope"))
    assert body["message"] == "container nope is not valid for pod mc"
    body = await error_of(v1.read_namespaced_pod_log("mc", "default", container="base", previous=True))
    assert body["message"] == 'previous terminated container "base" in pod "mc" not found'


async def test_previous_after_restart(v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod(
        "default", pod_manifest("rs", 'echo "run at $(date +%s%N)"; exit 1', restart_policy="OnFailure")
    )
    pod = await wait_for(
        lambda: v1.read_namespaced_pod("rs", "default"),
        lambda p: p.status.container_statuses and p.status.container_statuses[0].restart_count >= 1,
    )
    assert pod.status.container_statuses[0].last_state.terminated.exit_code == 1
    prev = await raw_log(v1, "rs", previous=True)
    assert prev.startswith(b"run at ")


async def test_behaviour_log_is_lazy_and_exact(v1: client.CoreV1Api) -> None:
    behaviour = {
        "duration_seconds": 0.5,
        "log_lines_per_second": 20,
        "log_line": "row {i} of ten",
        "log_line_bytes": 20,
    }
    await v1.create_namespaced_pod(
        "default", pod_manifest("bh", None, annotations={"sim.kpo-async.io/behavior": json.dumps(behaviour)})
    )
    await wait_phase(v1, "bh", ("Succeeded",))
    data = await raw_log(v1, "bh")
    lines = data.splitlines()
    assert len(lines) == 10
    assert lines[0] == b"row 1 of ten........" and len(lines[0]) == 20
    assert await raw_log(v1, "bh", tail_lines=1) == b"row 10 of ten.......\n"
    stamped = (await raw_log(v1, "bh", timestamps=True)).splitlines()
    assert all(TS.match(x) for x in stamped)
