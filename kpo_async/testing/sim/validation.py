"""Server-side validation and defaulting of Pods and Namespaces, with the apiserver's messages."""

from __future__ import annotations

import re
from typing import Any

from kpo_async.testing.sim.errors import ApiError, Cause, invalid
from kpo_async.testing.sim.field_syntax import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    LABEL_MSG,
    QUALIFIED_MSG,
    SUBDOMAIN_MSG,
    duplicate,
    invalid_value,
    not_found,
    required,
    unsupported,
    validate_labels,
    validate_qualified_key,
)
from kpo_async.testing.sim.spec_validation import (
    validate_container_fields,
    validate_resources,
    validate_spec_fields,
)
from kpo_async.testing.sim.util import fmt_time, new_uid, parse_quantity, rand_suffix

BEHAVIOR_ANNOTATION = "sim.kpo-async.io/behavior"

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_ENV_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or "
    "'.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', "
    "regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
)

VOLUME_SOURCES = (
    "emptyDir",
    "hostPath",
    "configMap",
    "secret",
    "persistentVolumeClaim",
    "projected",
    "downwardAPI",
    "csi",
    "ephemeral",
    "nfs",
    "image",
)


def validate_metadata(meta: dict[str, Any], causes: list[Cause], name_kind: str = "subdomain") -> None:
    name = meta.get("name", "")
    if not name:
        causes.append(required("metadata.name", "name or generateName is required"))
    elif name_kind == "label":
        if len(name) > 63:
            causes.append(invalid_value("metadata.name", name, "must be no more than 63 characters"))
        elif not DNS1123_LABEL.match(name):
            causes.append(invalid_value("metadata.name", name, LABEL_MSG))
    elif len(name) > 253:
        causes.append(invalid_value("metadata.name", name, "must be no more than 253 characters"))
    elif not DNS1123_SUBDOMAIN.match(name):
        causes.append(invalid_value("metadata.name", name, SUBDOMAIN_MSG))
    validate_labels(meta.get("labels") or {}, "metadata.labels", causes)
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        causes.append(invalid_value("metadata.annotations", annotations, "must be a map"))
        annotations = {}
    total = 0
    for key, value in annotations.items():
        causes.extend(validate_qualified_key("metadata.annotations", str(key)))
        total += len(str(key)) + len(str(value))
    if total > 256 * 1024:
        causes.append(
            Cause(
                "metadata.annotations",
                "FieldValueTooLong",
                f"Too long: may not be more than 262144 bytes (got {total})",
            )
        )


def apply_generate_name(meta: dict[str, Any]) -> None:
    if not meta.get("name") and meta.get("generateName"):
        prefix = meta["generateName"]
        if len(prefix) > 58:
            prefix = prefix[:58]
        meta["name"] = prefix + rand_suffix(5)


def _validate_behavior(annotations: dict[str, Any], causes: list[Cause]) -> None:
    raw = annotations.get(BEHAVIOR_ANNOTATION)
    if raw is None:
        return
    from kpo_async.testing.sim.behavior import parse_behavior

    field = f"metadata.annotations[{BEHAVIOR_ANNOTATION}]"
    try:
        parse_behavior(raw)
    except ValueError as e:
        causes.append(invalid_value(field, raw, f"kpo-async sim behaviour: {e}"))


def _validate_affinity_term(term: dict[str, Any], path: str, causes: list[Cause]) -> None:
    key = term.get("topologyKey") or ""
    field = f"{path}.topologyKey"
    if not key:
        causes.append(required(field, "can not be empty"))
        causes.append(invalid_value(field, key, "name part must be non-empty"))
        causes.append(invalid_value(field, key, QUALIFIED_MSG))
    else:
        causes.extend(validate_qualified_key(field, key))


def _validate_pod_affinity(affinity: dict[str, Any], causes: list[Cause]) -> None:
    """Pod (anti-)affinity terms need a topologyKey, as kube-apiserver's validation demands."""
    for kind in ("podAffinity", "podAntiAffinity"):
        rules = affinity.get(kind) or {}
        base = f"spec.affinity.{kind}"
        for i, term in enumerate(rules.get("requiredDuringSchedulingIgnoredDuringExecution") or []):
            _validate_affinity_term(
                term, f"{base}.requiredDuringSchedulingIgnoredDuringExecution[{i}]", causes
            )
        for i, weighted in enumerate(rules.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            path = f"{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            _validate_affinity_term(weighted.get("podAffinityTerm") or {}, f"{path}.podAffinityTerm", causes)


def _validate_volumes(volumes: list[Any], causes: list[Cause]) -> set[str]:
    """Check the volumes; returns their names (for the containers' volumeMounts)."""
    vol_names: set[str] = set()
    for i, vol in enumerate(volumes):
        vname = vol.get("name", "")
        path = f"spec.volumes[{i}].name"
        if not vname:
            causes.append(required(path))
        elif not DNS1123_LABEL.match(vname) or len(vname) > 63:
            causes.append(invalid_value(path, vname, LABEL_MSG))
        elif vname in vol_names:
            causes.append(duplicate(path, vname))
        vol_names.add(vname)
        sources = [k for k in VOLUME_SOURCES if k in vol]
        if len(sources) > 1:
            causes.append(
                Cause(
                    f"spec.volumes[{i}].{sources[1]}",
                    "FieldValueForbidden",
                    "Forbidden: may not specify more than 1 volume type",
                )
            )
    return vol_names


def _validate_env_and_mounts(c: dict[str, Any], base: str, vol_names: set[str], causes: list[Cause]) -> None:
    for j, env in enumerate(c.get("env") or []):
        ename = env.get("name", "")
        if not ename:
            causes.append(required(f"{base}.env[{j}].name"))
        elif not _ENV_NAME.match(ename):
            causes.append(invalid_value(f"{base}.env[{j}].name", ename, _ENV_MSG))
    mount_paths: set[str] = set()
    for j, vm in enumerate(c.get("volumeMounts") or []):
        mname = vm.get("name", "")
        if not mname:
            causes.append(required(f"{base}.volumeMounts[{j}].name"))
        elif mname not in vol_names:
            causes.append(not_found(f"{base}.volumeMounts[{j}].name", mname))
        mpath = vm.get("mountPath", "")
        if not mpath:
            causes.append(required(f"{base}.volumeMounts[{j}].mountPath"))
        elif mpath in mount_paths:
            causes.append(invalid_value(f"{base}.volumeMounts[{j}].mountPath", mpath, "must be unique"))
        mount_paths.add(mpath)


def _validate_container(
    c: dict[str, Any], base: str, seen: set[str], vol_names: set[str], causes: list[Cause]
) -> None:
    cname = c.get("name", "")
    if not cname:
        causes.append(required(f"{base}.name"))
    elif len(cname) > 63 or not DNS1123_LABEL.match(cname):
        causes.append(invalid_value(f"{base}.name", cname, LABEL_MSG))
    elif cname in seen:
        causes.append(duplicate(f"{base}.name", cname))
    seen.add(cname)
    if not c.get("image"):
        causes.append(required(f"{base}.image"))
    policy = c.get("imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        causes.append(unsupported(f"{base}.imagePullPolicy", policy, ["Always", "IfNotPresent", "Never"]))
    _validate_env_and_mounts(c, base, vol_names, causes)
    validate_resources(c.get("resources"), f"{base}.resources", causes)
    validate_container_fields(c, base, causes)
    for field in ("command", "args"):
        value = c.get(field)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            causes.append(invalid_value(f"{base}.{field}", value, "must be a list of strings"))


def validate_pod(pod: dict[str, Any]) -> None:
    """Raise a 422 Invalid ApiError listing every problem, like the apiserver."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec")
    causes: list[Cause] = []
    validate_metadata(meta, causes)
    _validate_behavior(meta.get("annotations") or {}, causes)
    if not isinstance(spec, dict):
        spec = {}
    vol_names = _validate_volumes(spec.get("volumes") or [], causes)
    containers = spec.get("containers") or []
    if not containers:
        causes.append(required("spec.containers"))
    seen: set[str] = set()
    for group, items in (("initContainers", spec.get("initContainers") or []), ("containers", containers)):
        for i, c in enumerate(items):
            _validate_container(c, f"spec.{group}[{i}]", seen, vol_names, causes)
    _validate_pod_affinity(spec.get("affinity") or {}, causes)
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        causes.append(unsupported("spec.restartPolicy", policy, ["Always", "OnFailure", "Never"]))
    validate_spec_fields(spec, causes)
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        causes.append(
            invalid_value("spec.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0")
        )
    if causes:
        raise invalid("Pod", meta.get("name", ""), causes)


def _default_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _default_container(c: dict[str, Any]) -> None:
    c.setdefault("resources", {})
    res = c["resources"]
    if res.get("limits"):
        req = res.setdefault("requests", {})
        for k, v in res["limits"].items():
            req.setdefault(k, v)
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("imagePullPolicy", _default_pull_policy(c.get("image", "")))
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("fieldRef")
        if ref is not None:
            ref.setdefault("apiVersion", "v1")


def qos_class(spec: dict[str, Any]) -> str:
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or parse_quantity(req.get(r, lim[r])) != parse_quantity(lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


#: Map-typed fields (Go maps with omitempty: an empty one is not stored); other `{}` are structs.
_MAP_FIELDS = frozenset(
    {"labels", "annotations", "nodeSelector", "overhead", "limits", "requests", "matchLabels"}
)
#: Plain Go bools with omitempty: `false` is not stored.
_OMITTED_FALSE = frozenset({"hostNetwork", "hostPID", "hostIPC", "stdin", "stdinOnce", "tty", "readOnly"})


def drop_omitted(value: Any) -> Any:
    """What a decode/encode round trip in kube-apiserver drops: empty lists, empty maps, false
    omitempty bools and nulls (an empty struct such as `affinity: {}` or `emptyDir: {}` stays)."""
    if isinstance(value, list):
        return [drop_omitted(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        item = drop_omitted(item)
        if item is None or (isinstance(item, list) and not item):
            continue
        if key in _MAP_FIELDS and isinstance(item, dict) and not item:
            continue
        if key in _OMITTED_FALSE and item is False:
            continue
        out[key] = item
    return out


def default_pod(pod: dict[str, Any], namespace: str) -> dict[str, Any]:
    """Fill the fields the apiserver fills on create. Mutates and returns `pod`."""
    for key in ("metadata", "spec"):
        if isinstance(pod.get(key), dict):
            pod[key] = drop_omitted(pod[key])
    pod["kind"] = "Pod"
    pod["apiVersion"] = "v1"
    meta = pod.setdefault("metadata", {})
    meta["namespace"] = namespace
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = fmt_time()
    meta["generation"] = 1
    for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "selfLink"):
        meta.pop(key, None)
    spec = pod.setdefault("spec", {})
    for vol in spec.get("volumes") or []:
        if not any(k in vol for k in VOLUME_SOURCES):
            vol["emptyDir"] = {}
        for k in ("configMap", "secret"):
            if k in vol:
                vol[k].setdefault("defaultMode", 420)
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        _default_container(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = sa
    spec["serviceAccount"] = sa
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    tolerations = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key for t in tolerations):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )
    if not spec.get("nodeName"):
        spec.pop("nodeName", None)
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    return pod


def validate_namespace(ns: dict[str, Any]) -> None:
    causes: list[Cause] = []
    validate_metadata(ns.get("metadata") or {}, causes, name_kind="label")
    if causes:
        raise invalid("Namespace", (ns.get("metadata") or {}).get("name", ""), causes)


def default_namespace(ns: dict[str, Any]) -> dict[str, Any]:
    ns["kind"] = "Namespace"
    ns["apiVersion"] = "v1"
    meta = ns.setdefault("metadata", {})
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = fmt_time()
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    meta.pop("namespace", None)
    ns["spec"] = {"finalizers": ["kubernetes"]}
    ns["status"] = {"phase": "Active"}
    return ns


def check_body_namespace(body: dict[str, Any], namespace: str) -> None:
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        body["metadata"] = {}
        return
    given = meta.get("namespace")
    if given and given != namespace:
        raise ApiError(
            400,
            "the namespace of the provided object does not match the namespace sent on the request",
            "BadRequest",
        )
