"""The cluster the compat DAGs' pods run on, the objects they refer to, and the pods they created.

Two targets (``KPO_ASYNC_COMPAT_CLUSTER``):

- ``embedded`` (default, `make compat`): the embedded cluster, one process started by the harness.
- ``real`` (`make compat-node`, tools/compat-node.sh): the real control plane of tools/cluster.sh with
  the real node of tools/node.sh (kubelet + containerd + runc), found through ``KPO_ASYNC_CLUSTER_DIR``.
  That control plane runs no kube-controller-manager, so the seeding here also does the little its
  controllers would do for namespace ``compat``: the ``default`` ServiceAccount, the
  ``kube-root-ca.crt`` ConfigMap, and binding the PVC to a hostPath PersistentVolume made for it
  (a statically provisioned volume, pre-bound the way the PV binder binds one).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

NAMESPACE = "compat"
TARGET = os.environ.get("KPO_ASYNC_COMPAT_CLUSTER", "embedded")
CLAIM = "compat-claim"
CLAIM_VOLUME = "compat-claim-volume"


def real_cluster_dir() -> Path:
    return Path(os.environ.get("KPO_ASYNC_CLUSTER_DIR", "/tmp/kpo-async-cluster"))


def real_cluster_problem() -> str | None:
    """Why the real control plane + node cannot be used, or None."""
    d = real_cluster_dir()
    if not (d / "admin.kubeconfig").exists():
        return f"no control plane in {d}: run tools/compat-node.sh (make compat-node)"
    if not (d / "node").is_dir():
        return f"no real node in {d}/node: run tools/compat-node.sh (make compat-node)"
    return None


async def _create(call: Any, *args: Any) -> None:
    """Create an object; one left by an earlier run against the same cluster is kept."""
    try:
        await call(*args)
    except ApiException as exc:
        if exc.status != 409:
            raise


async def seed(kubeconfig: Path, *, real: bool) -> None:
    """The Secrets, ConfigMaps, PVC, ServiceAccount and PriorityClass the compat DAGs refer to."""
    api = await config.new_client_from_config(config_file=str(kubeconfig))
    async with api:
        v1 = client.CoreV1Api(api)
        await _create(v1.create_namespace, {"metadata": {"name": NAMESPACE}})
        for name, data in (
            ("compat-db", {"url": "postgresql://compat@db/compat"}),
            ("compat-all", {"ALPHA": "alpha-value", "BETA": "beta-value"}),
        ):
            await _create(
                v1.create_namespaced_secret, NAMESPACE, {"metadata": {"name": name}, "stringData": data}
            )
        await _create(
            v1.create_namespaced_secret,
            NAMESPACE,
            {
                "metadata": {"name": "compat-pull"},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": '{"auths": {}}'},
            },
        )
        for name, data in (
            ("compat-cm-1", {"CM_ONE": "one"}),
            ("compat-cm-2", {"CM_TWO": "two"}),
            ("compat-files", {"app.ini": "mode=compat"}),
        ):
            await _create(
                v1.create_namespaced_config_map, NAMESPACE, {"metadata": {"name": name}, "data": data}
            )
        await _create(
            v1.create_namespaced_persistent_volume_claim,
            NAMESPACE,
            {
                "metadata": {"name": CLAIM},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
        await _create(v1.create_namespaced_service_account, NAMESPACE, {"metadata": {"name": "compat-sa"}})
        await _create(
            client.SchedulingV1Api(api).create_priority_class,
            {"metadata": {"name": "compat-medium"}, "value": 1000},
        )
        if real:
            await _controller_work(v1)


async def _controller_work(v1: client.CoreV1Api) -> None:
    """What kube-controller-manager would do for the namespace (this control plane runs none)."""
    # serviceaccount controller: pods that name no ServiceAccount run as `default`.
    await _create(v1.create_namespaced_service_account, NAMESPACE, {"metadata": {"name": "default"}})
    # root-ca-cert-publisher: the service-account token volume mounts this ConfigMap.
    ca = (real_cluster_dir() / "pki" / "ca.crt").read_text()
    await _create(
        v1.create_namespaced_config_map,
        NAMESPACE,
        {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": ca}},
    )
    await _bind_claim(v1)


async def _bind_claim(v1: client.CoreV1Api) -> None:
    """A hostPath PersistentVolume on the node, bound to the claim as the PV binder would: the
    volume's claimRef names the claim and its uid, the claim gets volumeName and the bind-completed
    annotation (what the scheduler checks), both get phase Bound (what the kubelet checks)."""
    claim = await v1.read_namespaced_persistent_volume_claim(CLAIM, NAMESPACE)
    if claim.status.phase == "Bound":
        return
    host_dir = real_cluster_dir() / "compat-volume"
    host_dir.mkdir(parents=True, exist_ok=True)
    host_dir.chmod(0o777)
    await _create(
        v1.create_persistent_volume,
        {
            "metadata": {"name": CLAIM_VOLUME},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(host_dir), "type": "Directory"},
                "claimRef": {
                    "kind": "PersistentVolumeClaim",
                    "apiVersion": "v1",
                    "namespace": NAMESPACE,
                    "name": CLAIM,
                    "uid": claim.metadata.uid,
                },
            },
        },
    )
    await v1.patch_persistent_volume_status(CLAIM_VOLUME, {"status": {"phase": "Bound"}})
    await v1.patch_namespaced_persistent_volume_claim(
        CLAIM,
        NAMESPACE,
        {
            "metadata": {
                "annotations": {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "pv.kubernetes.io/bound-by-controller": "yes",
                }
            },
            "spec": {"volumeName": CLAIM_VOLUME},
        },
    )
    await v1.patch_namespaced_persistent_volume_claim_status(
        CLAIM,
        NAMESPACE,
        {"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}},
    )


class PodRecorder:
    """Every pod created in the namespace while it runs, as the API server first stored it (its
    ADDED event), from a watch that resumes from the last resourceVersion it saw: a real API
    server keeps a bounded event history, so one watch at the end could find it gone."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.pods: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="compat-pod-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(60)
        if self._error:
            raise self._error

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(60)
        if self._error:
            raise self._error
        return self.pods

    def _main(self) -> None:
        try:
            asyncio.run(self._watch())
        except BaseException as exc:  # handed to the test thread by start()/stop()
            self._error = exc
            self._ready.set()

    async def _watch(self) -> None:
        api = await config.new_client_from_config(config_file=str(self.kubeconfig))
        async with api:
            v1 = client.CoreV1Api(api)
            rv = (await v1.list_namespaced_pod(NAMESPACE)).metadata.resource_version
            self._ready.set()
            while True:
                stopping = self._stop.is_set()  # one more pass after stop() catches the last events
                resp = await v1.list_namespaced_pod(
                    NAMESPACE, watch=True, resource_version=rv, timeout_seconds=2, _preload_content=False
                )
                async with resp:
                    async for line in resp.content:
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            raise RuntimeError(
                                f"pod watch from resourceVersion {rv} failed: {event['object']}"
                            )
                        rv = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] == "ADDED":
                            self.pods.append(event["object"])
                if stopping:
                    return
