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


MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: airflow-jobs
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: kpo-async
  namespace: airflow-jobs
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: airflow-jobs
data:
  mode: first
"""


async def test_kubectl_create_namespace_and_typed_objects(cluster: SimCluster) -> None:
    """`kubectl create namespace|configmap|secret|serviceaccount` post protobuf bodies."""
    rc, out, err = await kubectl(cluster, "create", "namespace", "airflow-jobs")
    assert (rc, out.strip()) == (0, "namespace/airflow-jobs created"), err
    rc, out, err = await kubectl(
        cluster, "-n", "airflow-jobs", "create", "configmap", "settings", "--from-literal=mode=first"
    )
    assert (rc, out.strip()) == (0, "configmap/settings created"), err
    rc, out, err = await kubectl(
        cluster, "-n", "airflow-jobs", "create", "secret", "generic", "token", "--from-literal=key=s3cret"
    )
    assert (rc, out.strip()) == (0, "secret/token created"), err
    rc, out, err = await kubectl(cluster, "-n", "airflow-jobs", "create", "serviceaccount", "kpo-async")
    assert (rc, out.strip()) == (0, "serviceaccount/kpo-async created"), err

    rc, out, err = await kubectl(cluster, "get", "namespace", "airflow-jobs", "-o", "json")
    namespace = json.loads(out)
    assert namespace["status"]["phase"] == "Active"
    assert namespace["metadata"]["labels"] == {"kubernetes.io/metadata.name": "airflow-jobs"}
    assert "generateName" not in namespace["metadata"]
    rc, out, err = await kubectl(cluster, "-n", "airflow-jobs", "get", "configmap", "settings", "-o", "json")
    assert json.loads(out)["data"] == {"mode": "first"}
    rc, out, err = await kubectl(cluster, "-n", "airflow-jobs", "get", "secret", "token", "-o", "json")
    secret = json.loads(out)
    assert secret["data"] == {"key": "czNjcmV0"} and secret["type"] == "Opaque"
    rc, out, err = await kubectl(cluster, "-n", "airflow-jobs", "get", "serviceaccounts")
    assert sorted(line.split()[0] for line in out.strip().splitlines()[1:]) == ["default", "kpo-async"]

    rc, out, err = await kubectl(cluster, "create", "namespace", "airflow-jobs")
    assert rc == 1 and 'namespaces "airflow-jobs" already exists' in err
    # a pod can now run there
    rc, out, err = await kubectl(
        cluster, "-n", "airflow-jobs", "run", "hello", "--image=alpine:3.20", "--restart=Never", "--",
        "sh", "-c", "echo hi",
    )  # fmt: skip
    assert (rc, out.strip()) == (0, "pod/hello created"), err


async def test_kubectl_create_f_and_apply_f(cluster: SimCluster) -> None:
    """Client-side validation finds the server validates fields itself, as a real server does."""
    rc, out, err = await kubectl(cluster, "create", "-f", "-", stdin=MANIFESTS.encode())
    assert rc == 0, err
    assert out.split("\n")[:3] == [
        "namespace/airflow-jobs created",
        "serviceaccount/kpo-async created",
        "configmap/settings created",
    ]
    rc, out, err = await kubectl(cluster, "create", "-f", "-", stdin=MANIFESTS.encode())
    assert rc == 1 and 'namespaces "airflow-jobs" already exists' in err

    changed = MANIFESTS.replace("mode: first", "mode: second")
    rc, out, err = await kubectl(cluster, "apply", "-f", "-", stdin=changed.encode())
    assert rc == 0, err
    assert "configmap/settings configured" in out
    rc, out, err = await kubectl(cluster, "apply", "-f", "-", stdin=changed.encode())
    assert rc == 0, err
    assert out.split("\n")[:3] == [
        "namespace/airflow-jobs unchanged",
        "serviceaccount/kpo-async unchanged",
        "configmap/settings unchanged",
    ]
    rc, out, err = await kubectl(cluster, "-n", "airflow-jobs", "get", "configmap", "settings", "-o", "json")
    assert json.loads(out)["data"] == {"mode": "second"}

    fresh = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: applied\n"
    rc, out, err = await kubectl(cluster, "apply", "-f", "-", stdin=fresh.encode())
    assert (rc, out.strip()) == (0, "namespace/applied created"), err


async def test_kubectl_create_f_leaves_validation_to_the_server(cluster: SimCluster) -> None:
    bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: []\n"
    rc, _, err = await kubectl(cluster, "create", "-f", "-", stdin=bad.encode())
    assert rc == 1
    assert 'The Pod "p" is invalid: spec.containers: Required value' in err


async def test_kubectl_create_f_refuses_unknown_fields(cluster: SimCluster) -> None:
    """kubectl asks for `fieldValidation=Strict`: a typo in a field name is refused, as by a real server."""
    typo = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    imagee: x\n"
    )
    rc, _, err = await kubectl(cluster, "create", "-f", "-", stdin=typo.encode())
    assert rc == 1
    assert 'strict decoding error: unknown field "spec.containers[0].imagee"' in err, err
    rc, out, err = await kubectl(cluster, "get", "pods", "-o", "name")
    assert (rc, out.strip()) == (0, ""), err


async def test_kpo_async_sim_creates_the_namespaces_it_is_given(tmp_path) -> None:
    import sys

    kubeconfig = tmp_path / "sim.kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kpo_async.cli", "sim", "--kubeconfig", str(kubeconfig),
        "--namespace", "airflow-jobs", "--namespace", "team-a",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        printed = [(await asyncio.wait_for(proc.stdout.readline(), 60)).decode() for _ in range(4)]
        assert printed[0] == f"kubeconfig: {kubeconfig}\n"
        assert printed[2] == "namespaces: default, airflow, airflow-jobs, team-a\n"
        assert printed[3] == "Running until Ctrl-C.\n"
        run = await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", str(kubeconfig), "get", "namespaces", "-o", "name",
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
        out, _ = await asyncio.wait_for(run.communicate(), 30)
        assert sorted(out.decode().split()) == [
            "namespace/airflow",
            "namespace/airflow-jobs",
            "namespace/default",
            "namespace/team-a",
        ]
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_kubectl_creates_and_lists_quotas_and_priority_classes(cluster: SimCluster) -> None:
    manifests = (
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: compute\nspec:\n  hard:\n"
        "    pods: '3'\n    requests.cpu: '1'\n    limits.memory: 1Gi\n"
        "---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: urgent\nvalue: 5000\n"
    )
    rc, out, err = await kubectl(cluster, "create", "-f", "-", stdin=manifests.encode())
    assert rc == 0, err
    assert out.split("\n")[:2] == [
        "resourcequota/compute created",
        "priorityclass.scheduling.k8s.io/urgent created",
    ]
    pod = pod_manifest("counted", "sleep 30")
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "250m"}, "limits": {"memory": "256Mi"}}
    rc, _, err = await kubectl(cluster, "create", "-f", "-", stdin=yaml.safe_dump(pod).encode())
    assert rc == 0, err

    rc, out, err = await kubectl(cluster, "get", "resourcequota")
    assert rc == 0, err
    header, row = out.strip().splitlines()
    assert header.split() == ["NAME", "AGE", "REQUEST", "LIMIT"]
    assert row.split()[0] == "compute"
    assert row.split("  ")[-1].strip() == "limits.memory: 256Mi/1Gi"
    assert "pods: 1/3, requests.cpu: 250m/1" in row

    rc, out, err = await kubectl(cluster, "get", "quota", "compute", "-o", "jsonpath={.status.used}")
    assert rc == 0, err
    assert json.loads(out) == {"limits.memory": "256Mi", "pods": "1", "requests.cpu": "250m"}
    rc, out, err = await kubectl(cluster, "get", "priorityclass", "urgent")
    assert rc == 0, err
    assert out.splitlines()[1].split()[:3] == ["urgent", "5000", "false"]


async def test_kubectl_create_quota_sends_protobuf(cluster: SimCluster) -> None:
    rc, out, err = await kubectl(cluster, "create", "quota", "small", "--hard=pods=2,requests.memory=1Gi")
    assert (rc, out.strip()) == (0, "resourcequota/small created"), err
    rc, out, err = await kubectl(cluster, "get", "quota", "small", "-o", "jsonpath={.status}")
    assert rc == 0, err
    assert json.loads(out) == {
        "hard": {"pods": "2", "requests.memory": "1Gi"},
        "used": {"pods": "0", "requests.memory": "0"},
    }
