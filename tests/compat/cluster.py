"""The cluster the compat DAGs' pods run on, the objects they refer to, and the pods they created.

Two targets (``KPO_ASYNC_COMPAT_CLUSTER``):

- ``embedded`` (default, `make compat`): the embedded cluster, one process started by the harness.
- ``real`` (`make compat-node`, tools/compat-node.sh): the real control plane of tools/cluster.sh with
  the real node of tools/node.sh (kubelet + containerd + runc), found through ``KPO_ASYNC_CLUSTER_DIR``.
  Its kube-controller-manager creates namespace ``compat``'s ``default`` ServiceAccount and
  ``kube-root-ca.crt`` ConfigMap (the seeding waits for both) and binds the PVC to the hostPath
  PersistentVolume made for it here (a statically provisioned volume, pre-bound to the claim).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
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
    """Wait for what kube-controller-manager does for a new namespace: the serviceaccount controller
    creates `default` (pods that name no ServiceAccount are refused until it exists), the
    root-ca-cert-publisher the ConfigMap that service-account token volumes mount."""
    await _until(
        lambda: _exists(v1.read_namespaced_service_account, "default", NAMESPACE),
        f"ServiceAccount {NAMESPACE}/default",
    )
    await _until(
        lambda: _exists(v1.read_namespaced_config_map, "kube-root-ca.crt", NAMESPACE),
        f"ConfigMap {NAMESPACE}/kube-root-ca.crt",
    )
    await _bind_claim(v1)


async def _exists(read: Callable[..., Awaitable[Any]], *args: Any) -> bool:
    try:
        await read(*args)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return False
    return True


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    """Poll ``check()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f}s: is kube-controller-manager running?")
        await asyncio.sleep(0.2)


async def _bind_claim(v1: client.CoreV1Api) -> None:
    """A hostPath PersistentVolume on the node, pre-bound to the claim (its claimRef names the claim
    and its uid); kube-controller-manager's PV binder completes the binding (claim volumeName,
    bind-completed annotation, both phases Bound)."""
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

    async def bound() -> bool:
        claim = await v1.read_namespaced_persistent_volume_claim(CLAIM, NAMESPACE)
        return bool(claim.status.phase == "Bound")

    await _until(bound, f"binding of PersistentVolumeClaim {NAMESPACE}/{CLAIM} (PV binder)")


class PodRecorder:
    """Every pod created in the namespace while it runs, as the API server first stored it (its
    ADDED event), from a watch that resumes from the last resourceVersion it saw: a real API
    server keeps a bounded event history, so one watch at the end could find it gone. `received`
    holds when each pod's event arrived (time.monotonic()), to tell apart runs whose pods carry the
    same labels but never run at the same time."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.pods: list[dict[str, Any]] = []
        self.received: list[float] = []
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
                            self.received.append(time.monotonic())
                            self.pods.append(event["object"])
                if stopping:
                    return
