"""The Pod spec fields kube-apiserver validates besides names and volumes: resources (names and
quantities), container ports, DNS fields, the service account name and enumerated values."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from kpo_async.testing.sim.errors import Cause
from kpo_async.testing.sim.field_syntax import (
    dns_label_errors,
    dns_subdomain_errors,
    duplicate,
    invalid_value,
    qualified_name_errors,
    required,
    unsupported,
    validate_labels,
)
from kpo_async.testing.sim.util import parse_quantity

#: Resource names without a domain prefix that kube-apiserver knows (quota names included).
_STANDARD_RESOURCES = frozenset(
    {
        *("cpu", "memory", "ephemeral-storage", "storage", "pods", "services", "secrets", "configmaps"),
        *("requests.cpu", "requests.memory", "requests.ephemeral-storage", "requests.storage"),
        *("limits.cpu", "limits.memory", "limits.ephemeral-storage"),
        *("replicationcontrollers", "resourcequotas", "persistentvolumeclaims"),
        *("services.nodeports", "services.loadbalancers"),
    }
)
_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
_DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
_TERMINATION_MESSAGE_POLICIES = ["File", "FallbackToLogsOnError"]
_PORT_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_INT32_MAX = 2**31 - 1


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _is_extended(name: str) -> bool:
    """A domain-prefixed name outside kubernetes.io, such as nvidia.com/gpu."""
    if _is_native(name) or name.startswith("requests."):
        return False
    return not qualified_name_errors("requests." + name)


def resource_name_errors(name: str) -> list[str]:
    """Why `name` cannot be a container's resource (in requests or limits), as kube-apiserver says."""
    errors = qualified_name_errors(name)
    if errors:
        return errors
    if "/" not in name:
        if name not in _STANDARD_RESOURCES and not name.startswith(("hugepages-", "requests.hugepages-")):
            errors.append("must be a standard resource type or fully qualified")
        if name not in _CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            errors.append("must be a standard resource for containers")
    elif not _is_native(name) and not _is_extended(name):
        errors.append("doesn't follow extended resource name standard")
    return errors


def _overcommit_allowed(name: str) -> bool:
    return _is_native(name) and not name.startswith("hugepages-")


def _quantity(rname: str, qty: Any, field: str, causes: list[Cause]) -> Fraction | None:
    try:
        q = parse_quantity(qty)
    except ValueError as e:
        causes.append(invalid_value(field, qty, str(e)))
        return None
    if q < 0:
        causes.append(invalid_value(field, qty, "must be greater than or equal to 0"))
    if _is_extended(rname) and q.denominator != 1:
        # kube-apiserver prints the Quantity itself here, unquoted
        causes.append(
            Cause(field, "FieldValueInvalid", f"Invalid value: {qty}: must be an integer", qty, True)
        )
    return q


def validate_resources(res: Any, path: str, causes: list[Cause]) -> None:
    if not isinstance(res, dict):
        return
    parsed: dict[str, dict[str, Any]] = {}
    for kind in ("limits", "requests"):
        parsed[kind] = {}
        for rname, qty in (res.get(kind) or {}).items():
            field = f"{path}.{kind}[{rname}]"
            causes.extend(invalid_value(field, rname, msg) for msg in resource_name_errors(str(rname)))
            q = _quantity(str(rname), qty, field, causes)
            if q is not None:
                parsed[kind][rname] = q
    for rname, req in parsed["requests"].items():
        lim = parsed["limits"].get(rname)
        overcommit = _overcommit_allowed(str(rname))
        if lim is None:
            if not overcommit:
                causes.append(
                    required(f"{path}.limits", "Limit must be set for non overcommitable resources")
                )
            continue
        limit, request = res["limits"][rname], res["requests"][rname]
        if req != lim and not overcommit:
            causes.append(
                invalid_value(f"{path}.requests", request, f"must be equal to {rname} limit of {limit}")
            )
        elif req > lim:
            causes.append(
                invalid_value(
                    f"{path}.requests", request, f"must be less than or equal to {rname} limit of {limit}"
                )
            )


def _port_number(port: dict[str, Any], key: str, path: str, causes: list[Cause]) -> None:
    value = port.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= 65535:
        causes.append(invalid_value(f"{path}.{key}", value, "must be between 1 and 65535, inclusive"))


def _port_name_errors(name: str) -> list[str]:
    errors = ["must be no more than 15 characters"] if len(name) > 15 else []
    if not all(ch in "abcdefghijklmnopqrstuvwxyz0123456789-" for ch in name):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not any("a" <= ch <= "z" for ch in name):
        errors.append("must contain at least one letter (a-z)")
    if "--" in name:
        errors.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        errors.append("must not begin or end with a hyphen")
    return errors


def validate_ports(ports: Any, base: str, causes: list[Cause]) -> None:
    """A container's ports: names, numbers (0 is "not set") and protocols."""
    names: set[str] = set()
    for i, port in enumerate(ports if isinstance(ports, list) else []):
        if not isinstance(port, dict):
            continue
        path = f"{base}.ports[{i}]"
        name = port.get("name")
        if isinstance(name, str) and name:
            name_errors = _port_name_errors(name)
            causes.extend(invalid_value(f"{path}.name", name, msg) for msg in name_errors)
            if not name_errors and name in names:
                causes.append(duplicate(f"{path}.name", name))
            names.add(name)
        if not port.get("containerPort"):
            causes.append(required(f"{path}.containerPort"))
        else:
            _port_number(port, "containerPort", path, causes)
        if port.get("hostPort"):
            _port_number(port, "hostPort", path, causes)
        protocol = port.get("protocol")
        if protocol and protocol not in _PORT_PROTOCOLS:
            causes.append(unsupported(f"{path}.protocol", protocol, _PORT_PROTOCOLS))


def validate_container_fields(c: dict[str, Any], base: str, causes: list[Cause]) -> None:
    validate_ports(c.get("ports"), base, causes)
    policy = c.get("terminationMessagePolicy")
    if policy and policy not in _TERMINATION_MESSAGE_POLICIES:
        causes.append(unsupported(f"{base}.terminationMessagePolicy", policy, _TERMINATION_MESSAGE_POLICIES))


def _dns_name(spec: dict[str, Any], key: str, check: Any, causes: list[Cause]) -> None:
    value = spec.get(key)
    if isinstance(value, str) and value:
        causes.extend(invalid_value(f"spec.{key}", value, msg) for msg in check(value))


def validate_spec_fields(spec: dict[str, Any], causes: list[Cause]) -> None:
    """The pod-level fields: dnsPolicy, nodeSelector, serviceAccountName, activeDeadlineSeconds,
    hostname and subdomain (an empty string is "not set", as the defaulting makes it)."""
    dns_policy = spec.get("dnsPolicy")
    if dns_policy and dns_policy not in _DNS_POLICIES:
        causes.append(unsupported("spec.dnsPolicy", dns_policy, _DNS_POLICIES))
    if dns_policy == "None" and not spec.get("dnsConfig"):
        causes.append(required("spec.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    if spec.get("nodeSelector") is not None:
        validate_labels(spec["nodeSelector"], "spec.nodeSelector", causes)
    _dns_name(spec, "serviceAccountName", dns_subdomain_errors, causes)
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and not 1 <= deadline <= _INT32_MAX:
        causes.append(
            invalid_value(
                "spec.activeDeadlineSeconds", deadline, f"must be between 1 and {_INT32_MAX}, inclusive"
            )
        )
    _dns_name(spec, "hostname", dns_label_errors, causes)
    _dns_name(spec, "subdomain", dns_label_errors, causes)
