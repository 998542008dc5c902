"""Whose a pod is and what marks it: the task identity, its labels, annotations and pod name, and
the names shared by the operator, the trigger and the embedded cluster (annotations, XCom paths)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, astuple, dataclass

#: Label on every pod this project creates; the shared watch selects on it.
MANAGED_LABEL = "kpo-async.io/managed"
#: Annotation the trigger writes with its log cursor so a re-created trigger resumes exactly.
LOG_CURSOR_ANNOTATION = "kpo-async.io/log-cursor"
#: Annotation holding the XCom result once read, so it survives the sidecar being stopped.
XCOM_RESULT_ANNOTATION = "kpo-async.io/xcom-result"
#: Annotation a later try writes on the pod it adopts (reattach_on_restart), so that the trigger of
#: the earlier try, cancelled because its task was cleared, does not kill the pod now followed.
FOLLOWED_BY_TRY_ANNOTATION = "kpo-async.io/followed-by-try"
#: Annotations on a pod that replaces one the cluster took away (which relaunch of its try it is),
#: and on a pod whose creation waited for the namespace's quota (seconds); its timeline shows them.
RELAUNCH_ANNOTATION = "kpo-async.io/relaunch"
QUOTA_WAIT_ANNOTATION = "kpo-async.io/quota-wait-seconds"
#: Finalizer on every pod we create: the object outlives its deletion until the task has seen how
#: it ended (an evicted pod's DisruptionTarget), and whoever deletes it or keeps it releases it.
TASK_SEEN_FINALIZER = "kpo-async.io/task-seen"

XCOM_SIDECAR_NAME = "airflow-xcom-sidecar"
XCOM_MOUNT_PATH = "/airflow/xcom"
XCOM_RETURN_FILE = "/airflow/xcom/return.json"
#: The sidecar exits once this file exists; the trigger creates it over exec. A file rather than
#: `kill -2 1` so that the stop command is harmless wherever exec actually runs.
XCOM_STOP_FILE = "/airflow/xcom/.kpo-async-done"
XCOM_SIDECAR_SCRIPT = f'trap "exit 0" TERM INT; until [ -e {XCOM_STOP_FILE} ]; do sleep 0.5; done'

#: The longest pod name and label value Kubernetes accepts.
NAME_MAX_LENGTH = 63
SUFFIX_LENGTH = 8
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
POD_NAME_UNSAFE = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class TaskIdentity:
    """The task instance try a pod belongs to."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int = 1


def label_safe(value: str) -> str:
    """Return ``value`` if it is a valid label value, else a shortened form ending in a hash of it.

    Distinct inputs give distinct outputs: a value that had to change carries 8 hex chars of its sha256.
    """
    if len(value) <= NAME_MAX_LENGTH and (value == "" or QUALIFIED_NAME.match(value)):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:SUFFIX_LENGTH]
    stem = _LABEL_UNSAFE.sub("_", value).strip("._-")[: NAME_MAX_LENGTH - SUFFIX_LENGTH - 1].rstrip("._-")
    return f"{stem}-{digest}" if stem else digest


def identity_labels(identity: TaskIdentity) -> dict[str, str]:
    """Labels that find the pods of a task instance (values label-safe; see ``identity_annotations``).

    Like the official provider, ``map_index`` is only set for mapped tasks (``map_index >= 0``).
    """
    fields = {key: value for key, value in asdict(identity).items() if key != "map_index" or value >= 0}
    return {MANAGED_LABEL: "true", **{key: label_safe(str(value)) for key, value in fields.items()}}


def identity_annotations(identity: TaskIdentity) -> dict[str, str]:
    """The task identity verbatim (labels may have had to be shortened), for humans and for checking
    a label match was not a hash collision."""
    return {f"kpo-async.io/{key.replace('_', '-')}": str(value) for key, value in asdict(identity).items()}


def task_selector(identity: TaskIdentity, *, include_try: bool) -> str:
    """Label selector matching the pods of a task instance (of one try when ``include_try``)."""
    labels = identity_labels(identity)
    parts = [f"{key}={labels[key]}" for key in (MANAGED_LABEL, "dag_id", "task_id", "run_id")]
    parts.append(f"map_index={labels['map_index']}" if "map_index" in labels else "!map_index")
    if include_try:
        parts.append(f"try_number={labels['try_number']}")
    return ",".join(parts)


def belongs_to_try(labels: Mapping[str, str], identity: TaskIdentity) -> bool:
    """Whether a pod's `labels` are those of this try's pods (what ``task_selector`` selects)."""
    ours = identity_labels(identity)
    unmapped_ok = "map_index" in ours or "map_index" not in labels
    return unmapped_ok and all(labels.get(key) == value for key, value in ours.items())


def pod_name(base: str, *, identity: TaskIdentity | None, random_name_suffix: bool) -> str:
    """Pod name: ``base`` (the ``name`` argument, or the task id) made a DNS-1123 label of at most 63
    chars, plus a suffix.

    The suffix is 8 hex chars of a hash of the task identity, so building the pod of the same try twice
    gives the same name (and the API answers 409 instead of starting a second pod). Without an identity
    the suffix is random.
    """
    stem = POD_NAME_UNSAFE.sub("-", base.lower()).strip("-") or "pod"
    if not random_name_suffix:
        return stem[:NAME_MAX_LENGTH].rstrip("-")
    if identity is None:
        suffix = secrets.token_hex(SUFFIX_LENGTH // 2)
    else:  # a digest of [dag_id, task_id, run_id, map_index, try_number]
        suffix = hashlib.sha256(json.dumps(astuple(identity)).encode()).hexdigest()[:SUFFIX_LENGTH]
    return f"{stem[: NAME_MAX_LENGTH - SUFFIX_LENGTH - 1].rstrip('-')}-{suffix}"
