"""What is compared between the two runs of a task, after removing the by-design differences
that docs/migration.md lists ("What differs, and why")."""

from __future__ import annotations

import copy
import re
from typing import Any

SIDECAR = "airflow-xcom-sidecar"
#: Identity labels each operator adds, and the run_id label (cleaned differently, by design).
DESIGN_LABELS = {
    "kubernetes_pod_operator",
    "airflow_version",
    "airflow_kpo_in_cluster",
    "kpo-async.io/managed",
    "kpo-async.io/finalized",
    "already_checked",
    "run_id",
}
#: kpo-async's finalizer on every pod it creates (docs/migration.md).
DESIGN_FINALIZER = "kpo-async.io/task-seen"
#: The env vars carrying a Python decorator's program: the official `@task.kubernetes`'s script and
#: pickled arguments, `@task.kpo_async`'s one script holding both.
DECORATOR_SCRIPT_ENV = {"__PYTHON_SCRIPT", "__PYTHON_INPUT", "__KPO_ASYNC_PYTHON_SCRIPT"}
#: Set by the API server or the kubelet, never by the operator.
SERVER_METADATA = {"uid", "creationTimestamp", "resourceVersion", "generation", "managedFields"}
_SUFFIX = re.compile(r"-[a-z0-9]{8}$")
#: The service-account token volume kube-apiserver's ServiceAccount admission adds, named with a
#: random suffix per pod (the embedded cluster adds none).
_TOKEN_VOLUME = re.compile(r"^kube-api-access-[a-z0-9]{5}$")
_LOG_LINE = re.compile(
    r"^\S+ \[\w+\s*\] \[(?P<container>[a-z0-9][a-z0-9-]*)\] (?P<msg>.*?)(?:\s+\[[\w.]+\] loc=\S+.*)?$"
)


def normalized_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod as created, minus what differs by design (name suffix, identity labels and
    annotations, kpo-async's finalizer, the XCom sidecar's command and image, generated secret
    volume names, an empty `affinity: {}`) and the random suffix of the API server's
    service-account token volume."""
    pod = copy.deepcopy(pod)
    pod.pop("status", None)
    meta = pod["metadata"]
    for key in SERVER_METADATA:
        meta.pop(key, None)
    meta["name"] = _SUFFIX.sub("", meta.get("name", ""))
    finalizers = [f for f in meta.pop("finalizers", None) or [] if f != DESIGN_FINALIZER]
    if finalizers:
        meta["finalizers"] = finalizers
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k not in DESIGN_LABELS}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("kpo-async.io/")
    }
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    spec = pod["spec"]
    if spec.get("affinity") == {}:  # the official sends an empty affinity, kpo-async none
        del spec["affinity"]
    renamed: dict[str, str] = {}
    for i, vol in enumerate(spec.get("volumes") or []):
        if _TOKEN_VOLUME.match(vol["name"]):
            renamed[vol["name"]] = "kube-api-access"
            vol["name"] = "kube-api-access"
        elif "secret" in vol:
            new = f"secret-{vol['secret'].get('secretName')}-{i}"
            renamed[vol["name"]] = new
            vol["name"] = new
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            for mount in c.get("volumeMounts") or []:
                mount["name"] = renamed.get(mount["name"], mount["name"])
            if c.get("name") == SIDECAR:
                for key in ("command", "args", "image"):
                    c.pop(key, None)
            if any(e.get("name") in DECORATOR_SCRIPT_ENV for e in c.get("env") or []):
                # how each decorator hands its function to the pod's python (docs/migration.md)
                c.pop("command", None)
                c.pop("args", None)
                c["env"] = [e for e in c["env"] if e.get("name") not in DECORATOR_SCRIPT_ENV] or None
                if c["env"] is None:
                    del c["env"]
    return pod


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where `a` (official) and `b` (kpo-async) differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out += differences(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += differences(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [f"{path}: official={a!r} kpo_async={b!r}"]


def container_lines(task_output: str) -> list[tuple[str, str]]:
    """(container, line) for every container log line the operator logged for the task."""
    out = []
    for line in task_output.splitlines():
        m = _LOG_LINE.match(line)
        if m:
            out.append((m.group("container"), m.group("msg").rstrip()))
    return out


#: The official operator's warning before it reads a container's log again from about one second
#: before the last line it logged (pod_manager's follow loop; the pod's status lags the log's end).
_REREAD = re.compile(r"log read interrupted but container (?P<container>[a-z0-9][a-z0-9-]*) still running")


def official_container_lines(task_output: str) -> list[tuple[str, str]]:
    """container_lines() of an official run without the lines it logged twice after announcing a
    re-read: after each warning, the longest run of lines repeating the end of what that container
    had logged is dropped. kpo-async logs each line once (docs/migration.md, "Logs")."""
    parts: dict[str, list[list[str]]] = {}
    for line in task_output.splitlines():
        reread = _REREAD.search(line)
        if reread:
            parts.setdefault(reread["container"], [[]]).append([])
            continue
        m = _LOG_LINE.match(line)
        if m:
            parts.setdefault(m["container"], [[]])[-1].append(m["msg"].rstrip())
    out: list[tuple[str, str]] = []
    for container, segments in parts.items():
        kept = list(segments[0])
        for again in segments[1:]:
            overlap = max(
                k for k in range(min(len(kept), len(again)) + 1) if k == 0 or kept[-k:] == again[:k]
            )
            kept += again[overlap:]
        out += [(container, line) for line in kept]
    return out


#: The official `@task.kubernetes` runs its function through `bash -cx`: the trace of that bootstrap.
_BOOTSTRAP_TRACE = re.compile(r"^\++ (python -c |mkdir -p /airflow/xcom$|:$|python /tmp/script\.py )")


def without_bootstrap_trace(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The lines minus the official Python decorator's `bash -x` trace of its bootstrap commands
    (`@task.kpo_async` starts python directly; docs/migration.md)."""
    return [(c, m) for c, m in lines if not _BOOTSTRAP_TRACE.match(m)]


def without_traceback_frames(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The lines minus a Python traceback's frames (its indented lines between `Traceback (most
    recent call last):` and the exception line): each Python decorator names and lays out the
    program it runs its own way (docs/migration.md); the header and the exception line stay."""
    out: list[tuple[str, str]] = []
    in_traceback: set[str] = set()
    for container, msg in lines:
        if msg.startswith("Traceback (most recent call last):"):
            in_traceback.add(container)
        elif container in in_traceback:
            if msg.startswith(" "):
                continue
            in_traceback.discard(container)
        out.append((container, msg))
    return out


def xcom_view(xcoms: dict[str, Any]) -> dict[str, Any]:
    """A task's XComs with the pod name's suffix removed (random vs derived, by design) and
    without extra-link XComs (`_link_PodLink`: kpo-async registers a pod link, the official
    operator none)."""
    view = {k: v for k, v in xcoms.items() if not k.startswith("_link_")}
    if isinstance(view.get("pod_name"), str):
        view["pod_name"] = _SUFFIX.sub("", view["pod_name"])
    return view
