"""What a pod refers to by name: Secret/ConfigMap values for env and volumes, PVCs for scheduling.

Each lookup answers with the value or with the message a real kubelet/scheduler reports when
the object (or one of its keys) is missing, so the simulated pod waits the way a real one does.
"""

from __future__ import annotations

import base64
import posixpath
from typing import Any

from kpo_async.testing.sim.store import Store

_KIND = {"secret": ("secrets", "Secret"), "configmap": ("configmaps", "ConfigMap")}


def _data(store: Store, kind: str, ns: str, name: str) -> dict[str, bytes] | None:
    """Decoded key -> bytes of a Secret or ConfigMap, None if it does not exist."""
    obj = store.get(_KIND[kind][0], ns, name)
    if obj is None or obj.body is None:
        return None
    body = obj.body
    if kind == "secret":
        return {k: base64.b64decode(v) for k, v in (body.get("data") or {}).items()}
    out = {k: str(v).encode() for k, v in (body.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (body.get("binaryData") or {}).items()})
    return out


def env_from_refs(store: Store, ns: str, container: dict[str, Any]) -> dict[str, str] | str:
    """Variables from `envFrom`, or the CreateContainerConfigError message."""
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        kind = "configmap" if "configMapRef" in src else "secret" if "secretRef" in src else None
        if kind is None:
            continue
        ref = src.get("configMapRef") or src.get("secretRef") or {}
        data = _data(store, kind, ns, ref.get("name", ""))
        if data is None:
            if ref.get("optional"):
                continue
            return f'{kind} "{ref.get("name", "")}" not found'
        prefix = src.get("prefix") or ""
        for key, value in data.items():
            env[prefix + key] = value.decode(errors="replace")
    return env


def env_value_ref(store: Store, ns: str, value_from: dict[str, Any]) -> str | Exception | None:
    """One `valueFrom` Secret/ConfigMap key: its value, None (optional and absent), or an error."""
    kind = "configmap" if "configMapKeyRef" in value_from else "secret"
    ref = value_from.get("configMapKeyRef") or value_from.get("secretKeyRef") or {}
    name, key = ref.get("name", ""), ref.get("key", "")
    data = _data(store, kind, ns, name)
    if data is None:
        return None if ref.get("optional") else LookupError(f'{kind} "{name}" not found')
    if key not in data:
        if ref.get("optional"):
            return None
        return LookupError(f"couldn't find key {key} in {_KIND[kind][1]} {ns}/{name}")
    return data[key].decode(errors="replace")


def volume_files(store: Store, ns: str, volume: dict[str, Any]) -> dict[str, bytes] | str:
    """Files of a secret/configMap volume (relative path -> content), or the FailedMount message."""
    kind = "secret" if "secret" in volume else "configmap" if "configMap" in volume else None
    if kind is None:
        return {}
    src = volume.get("secret") or volume.get("configMap") or {}
    name = src.get("secretName", "") if kind == "secret" else src.get("name", "")
    data = _data(store, kind, ns, name)
    prefix = f'MountVolume.SetUp failed for volume "{volume.get("name", "")}" : '
    if data is None:
        if src.get("optional"):
            return {}
        return f'{prefix}{kind} "{name}" not found'
    items = src.get("items")
    if not items:
        return dict(data)
    files: dict[str, bytes] = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if src.get("optional"):
                continue
            what = "secret key" if kind == "secret" else "config key"
            return f"{prefix}{kind} references non-existent {what}: {key}"
        files[posixpath.normpath(item.get("path") or key).lstrip("/")] = data[key]
    return files


def missing_claim(store: Store, ns: str, spec: dict[str, Any]) -> str | None:
    """The scheduler's PreFilter refusal for a pod naming a PVC that does not exist."""
    for vol in spec.get("volumes") or []:
        claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and store.get("persistentvolumeclaims", ns, claim) is None:
            # kube-scheduler 1.36's text, verbatim (the PreFilter status is repeated as "not found")
            return f'0/1 nodes are available: persistentvolumeclaim "{claim}" not found. not found'

    return None
