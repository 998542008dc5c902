"""`fieldValidation=Strict` (kubectl's default for create, apply and replace): kube-apiserver refuses
a Pod body with a field core/v1 does not define, with a 400 naming each one by its path.

The schema below names the fields of the Pod, its metadata, spec, containers and their common
parts; deeper objects (probes, security contexts, affinity, volume sources, status) are not checked.
"""

from __future__ import annotations

from typing import Any

from kpo_async.testing.sim.errors import ApiError

#: field name -> the schema of its value (a dict of known fields) or None when it is not checked.
Schema = dict[str, Any]


def _open(*names: str) -> Schema:
    return dict.fromkeys(names)


_META = _open(
    *("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation"),
    *("creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations"),
    *("ownerReferences", "finalizers", "managedFields"),
)
_CONTAINER: Schema = {
    **_open(
        *("name", "image", "command", "args", "workingDir", "envFrom", "resizePolicy", "restartPolicy"),
        *("restartPolicyRules", "volumeDevices", "livenessProbe", "readinessProbe", "startupProbe"),
        *("lifecycle", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy"),
        *("securityContext", "stdin", "stdinOnce", "tty"),
    ),
    "ports": _open("name", "hostPort", "containerPort", "protocol", "hostIP"),
    "env": _open("name", "value", "valueFrom"),
    "resources": _open("limits", "requests", "claims"),
    "volumeMounts": _open(
        "name", "readOnly", "recursiveReadOnly", "mountPath", "subPath", "mountPropagation", "subPathExpr"
    ),
}
_VOLUME = _open(
    *("name", "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret"),
    *("nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs"),
    *("flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk"),
    *("photonPersistentDisk", "projected", "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral"),
    "image",
)
_SPEC: Schema = {
    **_open(
        *("ephemeralContainers", "restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds"),
        *("dnsPolicy", "nodeSelector", "serviceAccountName", "serviceAccount", "nodeName", "hostNetwork"),
        *("automountServiceAccountToken", "hostPID", "hostIPC", "shareProcessNamespace", "securityContext"),
        *("imagePullSecrets", "hostname", "subdomain", "affinity", "schedulerName", "tolerations"),
        *("hostAliases", "priorityClassName", "priority", "dnsConfig", "readinessGates", "runtimeClassName"),
        *("enableServiceLinks", "preemptionPolicy", "overhead", "topologySpreadConstraints", "os"),
        *("setHostnameAsFQDN", "hostUsers", "schedulingGates", "resourceClaims", "resources"),
        "hostnameOverride",
    ),
    "volumes": _VOLUME,
    "initContainers": _CONTAINER,
    "containers": _CONTAINER,
}
_POD: Schema = {**_open("apiVersion", "kind", "status"), "metadata": _META, "spec": _SPEC}


def unknown_fields(value: Any, schema: Schema, path: str = "") -> list[str]:
    """The paths of the fields in `value` that `schema` does not know, in the body's order."""
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in unknown_fields(item, schema, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return []
    found: list[str] = []
    for key, item in value.items():
        child = f"{path}.{key}" if path else str(key)
        if key not in schema:
            found.append(child)
        elif schema[key] is not None:
            found.extend(unknown_fields(item, schema[key], child))
    return found


def check_strict_pod(body: dict[str, Any], field_validation: str | None) -> None:
    """Refuse unknown fields in a Pod body when the request asks for strict field validation."""
    if field_validation != "Strict":
        return
    unknown = unknown_fields(body, _POD)
    if unknown:
        fields = ", ".join(f'unknown field "{p}"' for p in unknown)
        raise ApiError(
            400,
            f'Pod in version "v1" cannot be handled as a Pod: strict decoding error: {fields}',
            "BadRequest",
        )
