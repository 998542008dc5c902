"""kubectl v1.32 against the simulator with its kubeconfig: create -f, get, logs -f, exec, delete, -w."""

from __future__ import annotations

import asyncio
import json
import os
import shutil

import pytest
import yaml

from kpo_async.testing.sim import SimCluster

from .conftest import pod_manifest, wait_for

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl not installed")


async def kubectl(
    cluster: SimCluster, *args: str, stdin: bytes | None = None, timeout: float = 20
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        cluster.kubeconfig_path,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": cluster.workdir},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_kubectl_create_get_logs_exec_delete(cluster: SimCluster) -> None:
    manifest = pod_manifest("kc", "echo starting; for i in 1 2 3; do echo tick $i; sleep 0.3; done; sleep 30")
    rc, out, err = await kubectl(cluster, "create", "-f", "-", stdin=yaml.safe_dump(manifest).encode())
    assert rc == 0, err
    assert out.strip() == "pod/kc created"

    rc, out, err = await kubectl(cluster, "wait", "--for=condition=Ready", "pod/kc", "--timeout=10s")
    assert rc == 0, err

    rc, out, err = await kubectl(cluster, "get", "pods")
    assert rc == 0, err
    header, row = out.strip().splitlines()
    assert header.split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert row.split()[:4] == ["kc", "1/1", "Running", "0"]

    rc, out, err = await kubectl(cluster, "get", "pod", "kc", "-o", "json")
    pod = json.loads(out)
    assert pod["kind"] == "Pod" and pod["status"]["phase"] == "Running"
    assert pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]

    rc, out, err = await kubectl(cluster, "exec", "kc", "--", "sh", "-c", "echo from exec; exit 4")
    assert rc == 4
    assert out == "from exec\n"
    assert "command terminated with exit code 4" in err

    rc, out, err = await kubectl(cluster, "exec", "-i", "kc", "--", "cat", stdin=b"piped stdin\n")
    assert rc == 0 and out == "piped stdin\n", err

    # logs -f follows until we stop the container
    follow = asyncio.ensure_future(kubectl(cluster, "logs", "-f", "kc"))
    await wait_for(lambda: kubectl(cluster, "logs", "kc"), lambda done: "tick 3" in done[1], what="tick 3")
    rc, _, err = await kubectl(cluster, "exec", "kc", "--", "kill", "1")
    assert rc == 0, err
    rc, out, err = await follow
    assert rc == 0, err
    assert out == "starting\ntick 1\ntick 2\ntick 3\n"

    rc, out, err = await kubectl(cluster, "delete", "pod", "kc", "--timeout=10s")
    assert rc == 0, err
    assert out.strip() == 'pod "kc" deleted'
    rc, out, err = await kubectl(cluster, "get", "pod", "kc")
    assert rc == 1 and 'pods "kc" not found' in err


async def test_kubectl_watch_and_events(cluster: SimCluster) -> None:
    watch = asyncio.ensure_future(kubectl(cluster, "get", "pods", "-w", "--request-timeout=3s"))
    await asyncio.sleep(0.5)
    rc, out, err = await kubectl(
        cluster, "run", "runner", "--image=alpine:3.20", "--restart=Never", "--", "sh", "-c", "echo hi"
    )
    assert rc == 0, err

    async def reasons() -> set[str]:
        selector = "involvedObject.name=runner"
        rc, out, err = await kubectl(cluster, "get", "events", "--field-selector", selector)
        assert rc == 0, err
        return {line.split()[2] for line in out.strip().splitlines()[1:]}

    expected = {"Scheduled", "Pulled", "Created", "Started"}
    await wait_for(reasons, lambda got: expected <= got, what="the runner's events")
    rc, out, err = await watch
    lines = out.strip().splitlines()
    assert lines and "runner" in out and "Completed" in out


async def test_kubectl_unauthorized(cluster: SimCluster) -> None:
    rc, _, err = await kubectl(cluster, "--token", "wrong", "get", "pods")
    assert rc == 1 and "You must be logged in to the server" in err
