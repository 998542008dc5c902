"""Build the pod an ``AsyncKubernetesPodOperator`` task runs: arguments in, ``V1Pod`` out, no I/O.

Precedence, merge rules, naming and labels are described in ``docs/pod-spec.md``.
"""

from __future__ import annotations

import copy
import hashlib
import operator
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client import V1Pod

from kpo_async.errors import InvalidArgumentError
from kpo_async.identity import (
    MANAGED_LABEL,
    POD_NAME_UNSAFE,
    SUFFIX_LENGTH,
    TASK_SEEN_FINALIZER,
    XCOM_MOUNT_PATH,
    XCOM_SIDECAR_NAME,
    XCOM_SIDECAR_SCRIPT,
    TaskIdentity,
    identity_annotations,
    identity_labels,
    pod_name,
)
from kpo_async.k8s_objects import checked_api_dict, to_v1pod

XCOM_VOLUME_NAME = "xcom"
DEFAULT_XCOM_SIDECAR_RESOURCES: dict[str, Any] = {"requests": {"cpu": "1m", "memory": "10Mi"}}

#: The guide's ``resources`` dict keys -> (section, resource name) of ``V1ResourceRequirements``.
RESOURCE_KEYS: dict[str, tuple[str, str]] = {
    "request_memory": ("requests", "memory"),
    "request_cpu": ("requests", "cpu"),
    "request_ephemeral_storage": ("requests", "ephemeral-storage"),
    "limit_memory": ("limits", "memory"),
    "limit_cpu": ("limits", "cpu"),
    "limit_gpu": ("limits", "nvidia.com/gpu"),
    "limit_ephemeral_storage": ("limits", "ephemeral-storage"),
}
_API_RESOURCE_KEYS = frozenset({"limits", "requests", "claims"})

#: What an official ``Secret`` says: how and what to expose, where, and which key (None: all).
_SECRET_FIELDS = ("deploy_type", "secret", "deploy_target", "key")
_POD_NAME_ARGUMENT = re.compile(r"^[A-Za-z0-9_.-]+$")  # what the official operator accepts for `name`


# --- arguments -----------------------------------------------------------------------------------------


@dataclass
class PodArguments:
    """Every pod-shaping argument of the operator, with the official ``KubernetesPodOperator`` meanings.

    Kubernetes objects may be models of either client or dicts in API JSON (camelCase).
    """

    namespace: str | None = None
    name: str | None = None
    image: str | None = None
    cmds: list[str] | None = None
    arguments: list[str] | None = None
    env_vars: dict[str, str] | list[Any] | None = None
    env_from: list[Any] | None = None
    labels: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    ports: list[Any] | None = None
    resources: dict[str, Any] | Any | None = None
    container_resources: Any | None = None
    volumes: list[Any] | None = None
    volume_mounts: list[Any] | None = None
    affinity: Any | None = None
    tolerations: list[Any] | None = None
    node_selector: dict[str, Any] | None = None
    service_account_name: str | None = None
    automount_service_account_token: bool | None = None
    security_context: Any | None = None
    container_security_context: Any | None = None
    image_pull_policy: str | None = None
    image_pull_secrets: list[Any] | str | None = None
    init_containers: list[Any] | None = None
    host_aliases: list[Any] | None = None
    hostnetwork: bool = False
    dnspolicy: str | None = None
    schedulername: str | None = None
    priority_class_name: str | None = None
    termination_grace_period: int | None = None
    active_deadline_seconds: int | None = None
    runtime_class_name: str | None = None
    termination_message_policy: str = "File"
    random_name_suffix: bool = True
    do_xcom_push: bool = False
    base_container_name: str = "base"
    xcom_sidecar_image: str = "alpine:3.20"
    xcom_sidecar_resources: dict[str, Any] | Any | None = None
    # Further official arguments that shape the pod.
    secrets: list[Any] | None = None  # airflow.providers.cncf.kubernetes.secret.Secret objects
    configmaps: list[str] | None = None
    pod_runtime_info_envs: list[Any] | None = None
    hostname: str | None = None
    subdomain: str | None = None
    dns_config: Any | None = None
    xcom_sidecar_container_security_context: Any | None = None


def validate_arguments(args: PodArguments) -> dict[str, Any]:
    """Raise ``InvalidArgumentError`` for the first unusable argument (call it after template rendering);
    return the pod the arguments describe, as API JSON (only what they set).

    Only what the API server cannot judge (or judges less helpfully) is checked here: the shape of
    each argument, the official operator's own rules and misspellings. Values such as a label or a
    quantity are the API server's to judge: its 422 names the field when the pod is created.
    Whether an image is given at all is checked by ``build_pod``: a template may provide it.
    """
    _check_pod_name(args.name)
    for argument in ("image", "xcom_sidecar_image"):
        _check_image(argument, getattr(args, argument))
    for argument in ("cmds", "arguments", "configmaps"):
        _check_string_list(argument, getattr(args, argument))
    check_whole_number("termination_grace_period", args.termination_grace_period, minimum=0)
    check_whole_number("active_deadline_seconds", args.active_deadline_seconds, minimum=1)
    if args.resources is not None and args.container_resources is not None:
        raise InvalidArgumentError(
            "resources", "both resources and container_resources are given", "pass only one of them"
        )
    return _arguments_layer(args)


def _check_pod_name(name: str | None) -> None:
    usable = isinstance(name, str) and _POD_NAME_ARGUMENT.match(name) and len(name) <= 253
    if name is not None and not (usable and POD_NAME_UNSAFE.sub("-", name.lower()).strip("-")):
        raise InvalidArgumentError(
            "name",
            f"{name!r} is not a usable pod name",
            "use letters, digits, '-', '.' and '_' only, with a letter or digit (at most 253 characters); "
            "it is lower-cased, other characters become '-' and it is cut to 63 characters with its suffix",
        )


def _check_image(argument: str, value: Any) -> None:
    # The API server only refuses an empty image; a space would fail later, when the node pulls it.
    if value is not None and (not isinstance(value, str) or not value or any(map(str.isspace, value))):
        raise InvalidArgumentError(
            argument, f"{value!r} is not an image reference", "pass an image such as 'python:3.12-slim'"
        )


def _check_string_list(argument: str, value: Any) -> None:
    is_list = isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)
    if value is not None and not is_list:
        fix = f"use {argument}=[{value!r}]" if isinstance(value, str) else "pass a list of strings"
        raise InvalidArgumentError(argument, f"{value!r} is not a list of strings", fix)


def check_choice(argument: str, value: Any, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise InvalidArgumentError(argument, f"{value!r} is not allowed", f"use one of {', '.join(choices)}")


def check_whole_number(argument: str, value: Any, *, minimum: int, of: str = "seconds") -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        number = f"a whole number of {of}" if of else "a whole number"
        raise InvalidArgumentError(
            argument, f"{value!r} is not {number} >= {minimum}", f"pass an int >= {minimum}"
        )


def _string_map(argument: str, value: Any, none: str | None = "") -> dict[str, Any]:
    """A dict of strings (``labels``, ``env_vars`` ...), its None values replaced by ``none`` (the official
    operator sends a None label as ""). Keys and values are the API server's to judge."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(argument, f"expected a dict, got {type(value).__name__}", "pass a dict")
    for key, item in value.items():
        if item is not None and not isinstance(item, str):
            raise InvalidArgumentError(
                argument,
                f"the value of {key!r} is a {type(item).__name__}",
                f"pass it as a string: str({item!r})",
            )
    return {key: none if item is None else item for key, item in value.items()}


# --- arguments -> API JSON -----------------------------------------------------------------------------


def _arguments_layer(args: PodArguments) -> dict[str, Any]:
    """The pod the explicit arguments describe, as API JSON (only what they set)."""
    container = _set_only(
        name=args.base_container_name,
        image=args.image,
        command=list(args.cmds or []),
        args=list(args.arguments or []),
        env=_env(args),
        envFrom=(_api(args, "env_from", "list[V1EnvFromSource]") or [])
        + [{"configMapRef": {"name": name}} for name in args.configmaps or []],
        ports=_api(args, "ports", "list[V1ContainerPort]"),
        volumeMounts=_api(args, "volume_mounts", "list[V1VolumeMount]"),
        resources=_resources("resources", args.resources)
        or _resources("container_resources", args.container_resources),
        imagePullPolicy=args.image_pull_policy,
        securityContext=_api(args, "container_security_context", "V1SecurityContext"),
        terminationMessagePolicy=args.termination_message_policy,
    )
    spec = _set_only(
        containers=[container],
        initContainers=_api(args, "init_containers", "list[V1Container]"),
        volumes=_api(args, "volumes", "list[V1Volume]"),
        imagePullSecrets=_image_pull_secrets(args.image_pull_secrets),
        serviceAccountName=args.service_account_name,
        automountServiceAccountToken=args.automount_service_account_token,
        hostNetwork=args.hostnetwork or None,
        hostname=args.hostname,
        subdomain=args.subdomain,
        hostAliases=_api(args, "host_aliases", "list[V1HostAlias]"),
        securityContext=_api(args, "security_context", "V1PodSecurityContext"),
        dnsPolicy=args.dnspolicy,
        dnsConfig=_api(args, "dns_config", "V1PodDNSConfig"),
        schedulerName=args.schedulername,
        priorityClassName=args.priority_class_name,
        runtimeClassName=args.runtime_class_name,
        nodeSelector=_string_map("node_selector", args.node_selector),
        affinity=_api(args, "affinity", "V1Affinity"),
        tolerations=_api(args, "tolerations", "list[V1Toleration]"),
        activeDeadlineSeconds=args.active_deadline_seconds,
        terminationGracePeriodSeconds=args.termination_grace_period,
    )
    _attach_secrets(args.secrets, container, spec)
    metadata = _set_only(
        name=args.name,
        namespace=args.namespace,
        labels=_string_map("labels", args.labels),
        annotations=_string_map("annotations", args.annotations),
    )
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _api(args: PodArguments, argument: str, model: str) -> Any:
    """The argument of that name as API JSON, checked against the model (``list[...]``: a list of them)."""
    return checked_api_dict(getattr(args, argument), model, argument=argument)


def _set_only(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if not _is_unset(value)}


def _is_unset(value: Any) -> bool:
    """None and empty collections/strings never override (as in the official provider); False and 0 do."""
    return value is None or (isinstance(value, (list, dict, str)) and len(value) == 0)


def _env(args: PodArguments) -> list[Any]:
    env_vars = args.env_vars
    if isinstance(env_vars, Mapping):  # the official operator's {name: value}
        env_vars = [{"name": k, "value": v} for k, v in _string_map("env_vars", env_vars, None).items()]
    env = checked_api_dict(env_vars, "list[V1EnvVar]", argument="env_vars") or []
    return env + (_api(args, "pod_runtime_info_envs", "list[V1EnvVar]") or [])


def _image_pull_secrets(value: Any) -> Any:
    if isinstance(value, str):  # "a,b" like the official operator
        value = [name.strip() for name in value.split(",") if name.strip()]
    if isinstance(value, (list, tuple)):
        value = [{"name": item} if isinstance(item, str) else item for item in value]
    return checked_api_dict(value, "list[V1LocalObjectReference]", argument="image_pull_secrets")


def _resources(argument: str, value: Any) -> dict[str, Any] | None:
    """``resources``/``container_resources``/``xcom_sidecar_resources`` as a ResourceRequirements dict
    (None when unset or empty)."""
    if isinstance(value, Mapping) and not set(value) <= _API_RESOURCE_KEYS:
        if unknown := sorted(set(value) - set(RESOURCE_KEYS)):
            raise InvalidArgumentError(
                argument,
                f"unknown key {', '.join(map(repr, unknown))}",
                f"use {', '.join(RESOURCE_KEYS)} (or a k8s.V1ResourceRequirements)",
            )
        result: dict[str, dict[str, Any]] = {}
        for key, quantity in value.items():
            if quantity is not None:
                section, resource = RESOURCE_KEYS[key]
                result.setdefault(section, {})[resource] = quantity
        value = result
    return checked_api_dict(value, "V1ResourceRequirements", argument=argument) or None


def _attach_secrets(values: Any, container: dict[str, Any], spec: dict[str, Any]) -> None:
    """Expose official ``Secret`` objects: env var, envFrom or a read-only volume, as the provider does."""
    for secret in values or []:
        deploy_type, name, target, key = (getattr(secret, field, None) for field in _SECRET_FIELDS)
        if deploy_type not in ("env", "volume") or not isinstance(name, str):
            raise InvalidArgumentError(
                "secrets",
                f"{secret!r} is not a Secret",
                "pass airflow.providers.cncf.kubernetes.secret.Secret",
            )
        if deploy_type == "env" and key is not None:
            ref = {"secretKeyRef": {"name": name, "key": key}}
            container.setdefault("env", []).append({"name": target, "valueFrom": ref})
        elif deploy_type == "env":
            container.setdefault("envFrom", []).append({"secretRef": {"name": name}})
        else:
            # A stable volume name (the provider uses a random one) keeps the built pod deterministic.
            volume = "secretvol-" + hashlib.sha256(f"{name}\0{target}".encode()).hexdigest()[:SUFFIX_LENGTH]
            items = checked_api_dict(getattr(secret, "items", None), "list[V1KeyToPath]", argument="secrets")
            source = _set_only(secretName=name, items=items)
            spec.setdefault("volumes", []).append({"name": volume, "secret": source})
            mount = {"name": volume, "mountPath": target, "readOnly": True}
            container.setdefault("volumeMounts", []).append(mount)


# --- laying one source over another --------------------------------------------------------------------

_Rule = Callable[[Any, Any], Any]


def _merge(base: dict[str, Any], client: dict[str, Any]) -> dict[str, Any]:
    """Lay ``client`` (API JSON) over ``base``: the fields ``client`` sets win, unless both set a field
    `_RULES` says how to combine."""
    result = copy.deepcopy(base)
    for key, value in client.items():
        if _is_unset(value):
            continue
        rule = None if _is_unset(result.get(key)) else _RULES.get(key)
        result[key] = rule(result[key], value) if rule is not None else copy.deepcopy(value)
    return result


def _union(base: list[Any], client: list[Any]) -> list[Any]:
    return copy.deepcopy(base) + [copy.deepcopy(item) for item in client if item not in base]


def _keyed(field: str | Callable[[dict[str, Any]], Hashable], combine: _Rule | None = None) -> _Rule:
    """List merge: a client item replaces (or is combined with) the base item of the same key (the
    named field's value, or what the function returns)."""
    key = operator.methodcaller("get", field) if isinstance(field, str) else field

    def merge(base: list[Any], client: list[Any]) -> list[Any]:
        result = copy.deepcopy(base)
        positions = {key(item): n for n, item in enumerate(result) if key(item) is not None}
        for item in client:
            n = positions.get(key(item))
            if n is None:
                result.append(copy.deepcopy(item))
            else:
                result[n] = combine(result[n], item) if combine else copy.deepcopy(item)
        return result

    return merge


def _port_key(port: dict[str, Any]) -> Hashable:
    if port.get("name"):
        return ("name", port["name"])
    return ("port", port.get("containerPort"), port.get("protocol") or "TCP")


#: How a field both sources set is combined, by its name: the pod's, its metadata's, its spec's, a
#: container's or its resources' (no name means two things among them).
_RULES: dict[str, _Rule] = {
    "metadata": _merge,
    "labels": operator.or_,
    "annotations": operator.or_,
    "finalizers": _union,
    "ownerReferences": _keyed("uid"),
    "spec": _merge,
    "containers": _keyed("name", _merge),
    "initContainers": _keyed("name", _merge),
    "volumes": _keyed("name"),
    "imagePullSecrets": _keyed("name"),
    "nodeSelector": operator.or_,
    "overhead": operator.or_,
    "env": _keyed("name"),
    "envFrom": _union,
    "ports": _keyed(_port_key),
    "volumeMounts": _keyed("mountPath"),
    "volumeDevices": _keyed("devicePath"),
    "resources": _merge,
    "limits": operator.or_,
    "requests": operator.or_,
}


def _name_base_container(source: dict[str, Any], base_container_name: str) -> None:
    """A source's base container is the one named ``base_container_name``, else its first (which is
    how the official provider, merging first containers, behaves): give it that name."""
    containers = source.get("spec", {}).get("containers") or []
    if containers and all(container.get("name") != base_container_name for container in containers):
        containers[0]["name"] = base_container_name


# --- building ------------------------------------------------------------------------------------------


def build_pod(
    args: PodArguments,
    *,
    identity: TaskIdentity | None = None,
    template: dict[str, Any] | None = None,
    full_pod_spec: Any | None = None,
    default_namespace: str | None = None,
) -> V1Pod:
    """Build the pod: ``template`` < ``full_pod_spec`` < explicit arguments, then name, labels, sidecar.

    ``template`` is API JSON as returned by ``kpo_async.pod_template``; ``full_pod_spec`` is a pod of
    either client or a dict; ``default_namespace`` (the connection's) applies when none of them sets
    one. Raises ``InvalidArgumentError`` naming the argument at fault.
    """
    explicit = validate_arguments(args)  # the arguments first: their errors are reported first
    given = ((template, "pod_template_file"), (full_pod_spec, "full_pod_spec"))
    layers = [checked_api_dict(value, "V1Pod", argument=name) for value, name in given if value is not None]
    pod: dict[str, Any] = {}
    for layer in [*layers, explicit]:
        _name_base_container(layer, args.base_container_name)
        pod = _merge(pod, layer)

    metadata, spec = pod.setdefault("metadata", {}), pod["spec"]
    spec["restartPolicy"] = "Never"  # forced, as by the official operator: the task is one run of the pod
    name = metadata.get("name") or (identity.task_id if identity is not None else None)
    if not name:
        raise InvalidArgumentError(
            "name", "no pod name and no task identity to derive one from", "pass name='...' or an identity"
        )
    metadata["name"] = pod_name(name, identity=identity, random_name_suffix=args.random_name_suffix)
    metadata["namespace"] = metadata.get("namespace") or default_namespace or "default"
    metadata["labels"] = {**metadata.get("labels", {}), MANAGED_LABEL: "true"}
    metadata["finalizers"] = list(dict.fromkeys([*metadata.get("finalizers", []), TASK_SEEN_FINALIZER]))
    if identity is not None:
        metadata["labels"].update(identity_labels(identity))
        metadata["annotations"] = {**metadata.get("annotations", {}), **identity_annotations(identity)}
    base = next(c for c in spec["containers"] if c.get("name") == args.base_container_name)
    if not base.get("image"):
        raise InvalidArgumentError(
            "image",
            f"the base container {args.base_container_name!r} has no image "
            "(not in the arguments, pod_template_file nor full_pod_spec)",
            "pass image='repository/name:tag'",
        )
    if args.do_xcom_push:
        _add_xcom_sidecar(spec, base, args)
    return to_v1pod(pod)


def _add_xcom_sidecar(spec: dict[str, Any], base: dict[str, Any], args: PodArguments) -> None:
    mounts = base.setdefault("volumeMounts", [])
    mount = next((item for item in mounts if item.get("mountPath") == XCOM_MOUNT_PATH), None)
    if mount is None:
        mount = {"name": XCOM_VOLUME_NAME, "mountPath": XCOM_MOUNT_PATH}
        mounts.append(mount)
    volumes = spec.setdefault("volumes", [])
    if not any(volume.get("name") == mount["name"] for volume in volumes):
        volumes.append({"name": mount["name"], "emptyDir": {}})
    sidecar = _set_only(
        name=XCOM_SIDECAR_NAME,
        image=args.xcom_sidecar_image,
        command=["sh", "-c", XCOM_SIDECAR_SCRIPT],
        volumeMounts=[{"name": mount["name"], "mountPath": XCOM_MOUNT_PATH}],
        resources=_resources("xcom_sidecar_resources", args.xcom_sidecar_resources)
        or copy.deepcopy(DEFAULT_XCOM_SIDECAR_RESOURCES),
        securityContext=_api(args, "xcom_sidecar_container_security_context", "V1SecurityContext"),
    )
    spec["containers"] = [*(c for c in spec["containers"] if c.get("name") != XCOM_SIDECAR_NAME), sidecar]
