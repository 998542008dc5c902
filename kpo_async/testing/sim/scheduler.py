"""Does the pod fit the one fake node? (node selector, required node affinity, resource requests)."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from kpo_async.testing.sim.util import parse_quantity

Resources = dict[str, Fraction]


def pod_requests(spec: Mapping[str, Any]) -> Resources:
    """max(sum of containers, any init container) per resource, plus one `pods` slot."""
    total: Resources = {}
    for c in spec.get("containers") or []:
        for k, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[k] = total.get(k, Fraction(0)) + parse_quantity(v)
    for c in spec.get("initContainers") or []:
        for k, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[k] = max(total.get(k, Fraction(0)), parse_quantity(v))
    total["pods"] = Fraction(1)
    return total


def _expr_ok(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        try:
            v, bound = int(labels[key]), int(values[0])
        except (KeyError, ValueError, IndexError):
            return False
        return v > bound if op == "Gt" else v < bound
    return False


def matches_node(spec: Mapping[str, Any], node_name: str, labels: Mapping[str, str]) -> bool:
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if terms:

        def term_ok(term: Mapping[str, Any]) -> bool:
            exprs = term.get("matchExpressions") or []
            fields = term.get("matchFields") or []
            if not exprs and not fields:
                return False
            return all(_expr_ok(e, labels) for e in exprs) and all(
                _expr_ok(f, {"metadata.name": node_name}) for f in fields
            )

        if not any(term_ok(t) for t in terms):
            return False
    return True


def fit(
    spec: Mapping[str, Any],
    node_name: str,
    labels: Mapping[str, str],
    allocatable: Mapping[str, Fraction],
    used: Mapping[str, Fraction],
) -> str | None:
    """None if the pod fits, else the scheduler's FailedScheduling message."""
    if not matches_node(spec, node_name, labels):
        return (
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        )
    short = []
    for name, req in sorted(pod_requests(spec).items()):
        if req <= 0:
            continue
        if used.get(name, Fraction(0)) + req > allocatable.get(name, Fraction(0)):
            short.append("Too many pods" if name == "pods" else f"Insufficient {name}")
    if short:
        reasons = ", ".join(f"1 {s}" for s in short)
        return (
            f"0/1 nodes are available: {reasons}. "
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        )
    return None


def fits(
    req: Mapping[str, Fraction], allocatable: Mapping[str, Fraction], used: Mapping[str, Fraction]
) -> bool:
    return all(
        used.get(k, Fraction(0)) + v <= allocatable.get(k, Fraction(0)) for k, v in req.items() if v > 0
    )


def choose_victims(
    req: Mapping[str, Fraction],
    allocatable: Mapping[str, Fraction],
    used: Mapping[str, Fraction],
    candidates: list[tuple[int, float, Resources]],
) -> list[int]:
    """kube-scheduler's choice among lower-priority pods (priority, start time, requests): the pod
    must fit once all of them are gone; then the most important are reprieved one by one (higher
    priority, then earlier start first) while it still fits. The indexes of the rest, or []."""
    base = dict(used)
    for _, _, requests in candidates:
        for k, v in requests.items():
            base[k] = base.get(k, Fraction(0)) - v
    if not candidates or not fits(req, allocatable, base):
        return []
    victims = []
    for i in sorted(range(len(candidates)), key=lambda i: (-candidates[i][0], candidates[i][1])):
        trial = dict(base)
        for k, v in candidates[i][2].items():
            trial[k] = trial.get(k, Fraction(0)) + v
        if fits(req, allocatable, trial):
            base = trial
        else:
            victims.append(i)
    return victims
