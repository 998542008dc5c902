"""Drop-in migration: the official KubernetesPodOperator's arguments, unchanged, give the same pod.

Both operators are constructed from the *same* keyword arguments (those of the KubernetesPodOperator
guide's examples, and the installed provider's whole signature). For the pod-shaping arguments, the
pod the official operator would create (`build_pod_request_obj(context, dry_run=True)`) is compared
with ours (`op.build_pod(context, None)`) on every field that must agree. What differs by design is
listed in `BY_DESIGN` and explained in docs/migration.md.
"""

from __future__ import annotations

import copy
import inspect
import re
import types
import warnings
from pathlib import Path
from typing import Any

import airflow
import pytest
from packaging.version import Version

official = pytest.importorskip(
    "airflow.providers.cncf.kubernetes.operators.pod", reason="the official provider (extra 'bench')"
)
from airflow.providers.cncf.kubernetes.secret import Secret  # noqa: E402
from kubernetes.client import ApiClient  # noqa: E402
from kubernetes.client import models as k8s  # noqa: E402

from kpo_async import AsyncKubernetesPodOperator  # noqa: E402
from kpo_async.operator import _ACCEPTED_WITHOUT_EFFECT  # noqa: E402
from kpo_async.testing.harness import FakeTI  # noqa: E402

KubernetesPodOperator = official.KubernetesPodOperator

#: What differs between the two pods on purpose (docs/migration.md says why for each).
BY_DESIGN = {
    "name suffix": "8 hex characters derived from the task try instead of 8 random characters",
    "name characters": "lower-cased, other characters than a-z 0-9 - become '-' (a valid pod name)",
    "identity labels": "kpo-async.io/managed instead of kubernetes_pod_operator/airflow_version/"
    "airflow_kpo_in_cluster; run_id made label-safe differently",
    "identity annotations": "kpo-async.io/dag-id ... try-number added",
    "xcom sidecar image and command": "waits for a stop file instead of a sleep loop killed by SIGINT",
    "secret volume names": "derived from the secret and path instead of random",
    "finalizer": "kpo-async.io/task-seen, released by whoever deletes or keeps the pod",
}

#: Pod spec fields that must be identical.
SPEC_FIELDS = (
    "volumes",
    "nodeSelector",
    "affinity",
    "tolerations",
    "serviceAccountName",
    "automountServiceAccountToken",
    "securityContext",
    "imagePullSecrets",
    "initContainers",
    "restartPolicy",
    "hostNetwork",
    "hostAliases",
    "dnsPolicy",
    "dnsConfig",
    "hostname",
    "subdomain",
    "schedulerName",
    "priorityClassName",
    "runtimeClassName",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
)
#: Base container fields that must be identical (all of them, in fact).
CONTAINER_FIELDS = (
    "name",
    "image",
    "command",
    "args",
    "env",
    "envFrom",
    "resources",
    "ports",
    "volumeMounts",
    "securityContext",
    "imagePullPolicy",
    "terminationMessagePolicy",
)
OFFICIAL_IDENTITY_LABELS = {"kubernetes_pod_operator", "airflow_version", "airflow_kpo_in_cluster"}
OUR_IDENTITY_LABELS = {"kpo-async.io/managed"}
SHARED_IDENTITY_LABELS = {"dag_id", "task_id", "run_id", "map_index", "try_number"}


# --- helpers -------------------------------------------------------------------------------------------


def context(ti: FakeTI | None = None) -> dict[str, Any]:
    ti = ti or FakeTI(dag_id="example_kpo", task_id="say_hello_name", run_id="manual__2026-01-01T00_00_00")
    return {
        "ti": ti,
        "task_instance": ti,
        "run_id": ti.run_id,
        "dag": types.SimpleNamespace(dag_id=ti.dag_id),
    }


def construct_both(**kwargs: Any) -> tuple[Any, AsyncKubernetesPodOperator]:
    kwargs.setdefault("task_id", "say_hello_name")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = KubernetesPodOperator(**copy.deepcopy(kwargs))
        ours = AsyncKubernetesPodOperator(**copy.deepcopy(kwargs))
    return theirs, ours


_api = ApiClient()


def as_dict(pod: Any) -> dict[str, Any]:
    """API JSON of a model of either client (the sync client's serializer only needs the model's maps)."""
    return prune(_api.sanitize_for_serialization(pod))


#: Lists whose order has no meaning to Kubernetes, and the key that identifies an item.
_UNORDERED = {"volumes": "name", "volumeMounts": "mountPath"}


def prune(value: Any) -> Any:
    """Drop unset values (None, [], {} except `emptyDir: {}`) and `hostNetwork: false` (the API default).

    `volumes` and `volumeMounts` are sorted: the official operator inserts the XCom volume first, we
    append it; Kubernetes gives their order no meaning.
    """
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            item = prune(item)
            if key in _UNORDERED and isinstance(item, list):
                item = sorted(item, key=lambda entry, k=_UNORDERED[key]: str(entry.get(k)))
            unset = item is None or item == [] or (item == {} and key != "emptyDir")
            if unset or (key == "hostNetwork" and item is False):
                continue
            result[key] = item
        return result
    if isinstance(value, list):
        return [prune(item) for item in value]
    return value


def normalize_secret_volumes(pod: dict[str, Any]) -> dict[str, Any]:
    """Secret volume names differ by design (random vs derived): name them by secret and mount path."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    mounts = {m["name"]: m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
    renames = {
        v["name"]: f"secret:{v['secret']['secretName']}:{mounts.get(v['name'])}"
        for v in spec.get("volumes", [])
        if "secret" in v
    }
    for volume in spec.get("volumes", []):
        volume["name"] = renames.get(volume["name"], volume["name"])
    for item in spec["containers"]:
        for mount in item.get("volumeMounts", []):
            mount["name"] = renames.get(mount["name"], mount["name"])
    return pod


def build_both(**kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    theirs, ours = construct_both(**kwargs)
    ctx = context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official_pod = theirs.build_pod_request_obj(ctx, dry_run=True)
    our_pod = ours.build_pod(context(), None)
    return normalize_secret_volumes(as_dict(official_pod)), normalize_secret_volumes(as_dict(our_pod))


def container(pod: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((c for c in pod["spec"]["containers"] if c["name"] == name), None)


def assert_same_pod(theirs: dict[str, Any], ours: dict[str, Any], user_labels: dict[str, str]) -> None:
    """Every field that must agree does; the documented by-design differences are checked too."""
    # metadata: namespace, the labels and annotations the user gave, the name up to its suffix
    assert ours["metadata"]["namespace"] == theirs["metadata"]["namespace"]
    for key, value in user_labels.items():
        assert theirs["metadata"]["labels"][key] == value
        assert ours["metadata"]["labels"][key] == value
    our_annotations = {
        k: v for k, v in ours["metadata"].get("annotations", {}).items() if not k.startswith("kpo-async.io/")
    }
    assert our_annotations == theirs["metadata"].get("annotations", {})
    their_stem, their_suffix = theirs["metadata"]["name"].rsplit("-", 1)
    our_stem, our_suffix = ours["metadata"]["name"].rsplit("-", 1)
    # by design: ours is always a valid DNS-1123 name (the official passes "my_pod" on, which the API rejects)
    assert our_stem == re.sub(r"[^a-z0-9-]+", "-", their_stem.lower()).strip("-")
    assert len(our_suffix) == len(their_suffix) == 8
    assert re.fullmatch(r"[0-9a-f]{8}", our_suffix)  # by design: derived from the try, hex

    # identity labels: shared keys, and the by-design extras on each side
    their_labels, our_labels = set(theirs["metadata"]["labels"]), set(ours["metadata"]["labels"])
    assert {"dag_id", "task_id", "run_id", "try_number"} <= their_labels & our_labels
    assert their_labels - our_labels <= OFFICIAL_IDENTITY_LABELS
    assert our_labels - their_labels <= OUR_IDENTITY_LABELS
    for key in ("dag_id", "task_id", "try_number"):
        assert ours["metadata"]["labels"][key] == theirs["metadata"]["labels"][key]

    # spec
    for field in SPEC_FIELDS:
        assert ours["spec"].get(field) == theirs["spec"].get(field), field
    assert [c["name"] for c in ours["spec"]["containers"]] == [
        c["name"] for c in theirs["spec"]["containers"]
    ]
    base_name = theirs["spec"]["containers"][0]["name"]
    their_base, our_base = container(theirs, base_name), container(ours, base_name)
    for field in CONTAINER_FIELDS:
        assert our_base.get(field) == their_base.get(field), field
    assert set(our_base) <= set(CONTAINER_FIELDS), "a base container field this test does not compare"

    # the XCom sidecar: same name, mount and resources; image and command differ by design
    their_sidecar = container(theirs, "airflow-xcom-sidecar")
    our_sidecar = container(ours, "airflow-xcom-sidecar")
    assert (their_sidecar is None) == (our_sidecar is None)
    if their_sidecar is not None:
        for field in ("volumeMounts", "resources"):
            assert our_sidecar.get(field) == their_sidecar.get(field), field


# --- the guide's examples ------------------------------------------------------------------------------

#: "Example: Using the KubernetesPodOperator to Run a Script in Another Language" (hello name).
GUIDE_HELLO_NAME = {
    "task_id": "say_hello_name_in_haskell",
    "image": "registry.example.com/hello-name:1.0",
    "in_cluster": True,
    "namespace": "airflow",
    "name": "my_pod",
    "random_name_suffix": True,
    "labels": {"app": "backend", "env": "dev"},
    "reattach_on_restart": True,
    "is_delete_operator_pod": True,
    "get_logs": True,
    "log_events_on_failure": True,
    "env_vars": {"NAME_TO_GREET": "your_name"},
}
#: "Example: Using the KubernetesPodOperator with XComs" (transform).
GUIDE_XCOM_TRANSFORM = {
    "task_id": "transform",
    "image": "registry.example.com/multiply-by-23:1.0",
    "in_cluster": True,
    "namespace": "airflow",
    "name": "containerized_transformation",
    "get_logs": True,
    "log_events_on_failure": True,
    "env_vars": {"DATA_POINT": "{{ ti.xcom_pull(task_ids='extract_data', key='return_value') }}"},
    "do_xcom_push": True,
}
#: "Example: Using KubernetesPodOperator to Run a Pod in a Separate Cluster" (run_on_EKS).
GUIDE_REMOTE_EKS = {
    "task_id": "start_k8s_pod",
    "cluster_context": "arn:aws:eks:eu-west-1:123456789012:cluster/my-cluster",
    "namespace": "airflow-jobs",
    "name": "example_pod",
    "image": "ubuntu",
    "cmds": ["bash", "-cx"],
    "arguments": ["echo hello"],
    "get_logs": True,
    "is_delete_operator_pod": False,
    "config_file": "/usr/local/airflow/include/config",
    "in_cluster": False,
    "node_selector": {"eks.amazonaws.com/nodegroup": "gpu-nodes"},
}
GUIDE_EXAMPLES = {
    "hello_name": GUIDE_HELLO_NAME,
    "xcom_transform": GUIDE_XCOM_TRANSFORM,
    "remote_eks": GUIDE_REMOTE_EKS,
}


@pytest.mark.parametrize("kwargs", GUIDE_EXAMPLES.values(), ids=GUIDE_EXAMPLES.keys())
def test_guide_examples_build_the_same_pod(kwargs: dict[str, Any]) -> None:
    theirs, ours = build_both(**kwargs)
    assert_same_pod(theirs, ours, kwargs.get("labels") or {})


def test_guide_xcom_example_has_the_sidecar_contract() -> None:
    """Same file, same mount, same sidecar name: images that write /airflow/xcom/return.json work as-is."""
    _, ours = build_both(**GUIDE_XCOM_TRANSFORM)
    base = container(ours, "base")
    assert {"name": "xcom", "mountPath": "/airflow/xcom"} in base["volumeMounts"]
    assert {"name": "xcom", "emptyDir": {}} in ours["spec"]["volumes"]
    assert container(ours, "airflow-xcom-sidecar") is not None


# --- every pod-shaping argument ------------------------------------------------------------------------

POD_SHAPING = {
    "container": {
        "image": "python:3.12-slim",
        "name": "etl",
        "namespace": "data",
        "cmds": ["python", "-c"],
        "arguments": ["print('hi')"],
        "env_vars": [
            k8s.V1EnvVar(name="PLAIN", value="1"),
            k8s.V1EnvVar(
                name="FROM_FIELD",
                value_from=k8s.V1EnvVarSource(
                    field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.name")
                ),
            ),
        ],
        "env_from": [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="db-credentials"))],
        "configmaps": ["settings"],
        "pod_runtime_info_envs": [
            k8s.V1EnvVar(
                name="NODE",
                value_from=k8s.V1EnvVarSource(
                    field_ref=k8s.V1ObjectFieldSelector(field_path="spec.nodeName")
                ),
            )
        ],
        "ports": [k8s.V1ContainerPort(container_port=8080, name="http")],
        "image_pull_policy": "IfNotPresent",
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": "500m", "memory": "512Mi"}, limits={"memory": "1Gi", "nvidia.com/gpu": "1"}
        ),
        "container_security_context": k8s.V1SecurityContext(
            run_as_non_root=True, read_only_root_filesystem=True
        ),
        "termination_message_policy": "FallbackToLogsOnError",
        "base_container_name": "main",
        "labels": {"team": "data", "tier": "batch"},
        "annotations": {"example.com/owner": "data-team"},
    },
    "pod spec": {
        "image": "alpine:3.20",
        "volumes": [
            k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory")),
            k8s.V1Volume(
                name="data",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="data"),
            ),
        ],
        "volume_mounts": [
            k8s.V1VolumeMount(name="scratch", mount_path="/scratch"),
            k8s.V1VolumeMount(name="data", mount_path="/data", read_only=True),
        ],
        "node_selector": {"kubernetes.io/arch": "amd64"},
        "affinity": k8s.V1Affinity(
            node_affinity=k8s.V1NodeAffinity(
                required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(
                    node_selector_terms=[
                        k8s.V1NodeSelectorTerm(
                            match_expressions=[
                                k8s.V1NodeSelectorRequirement(
                                    key="topology.kubernetes.io/region", operator="In", values=["eu-west-1"]
                                )
                            ]
                        )
                    ]
                )
            )
        ),
        "tolerations": [k8s.V1Toleration(key="gpu", operator="Exists", effect="NoSchedule")],
        "service_account_name": "airflow-jobs",
        "automount_service_account_token": False,
        "security_context": k8s.V1PodSecurityContext(run_as_user=1000, fs_group=2000),
        "image_pull_secrets": [k8s.V1LocalObjectReference(name="registry")],
        "init_containers": [
            k8s.V1Container(name="wait-for-db", image="busybox:1.36", command=["sh", "-c", "sleep 1"])
        ],
        "hostnetwork": True,
        "host_aliases": [k8s.V1HostAlias(ip="127.0.0.1", hostnames=["db.local"])],
        "dnspolicy": "ClusterFirstWithHostNet",
        "dns_config": k8s.V1PodDNSConfig(nameservers=["1.1.1.1"]),
        "hostname": "etl-host",
        "subdomain": "jobs",
        "schedulername": "batch-scheduler",
        "priority_class_name": "low",
        "runtime_class_name": "gvisor",
        "termination_grace_period": 30,
        "active_deadline_seconds": 3600,
    },
    "image_pull_secrets as a string": {"image": "alpine:3.20", "image_pull_secrets": "registry-a,registry-b"},
    "secrets": {
        "image": "alpine:3.20",
        "secrets": [
            Secret("env", "DB_PASSWORD", "db-credentials", "password"),
            Secret("env", None, "api-tokens"),
            Secret("volume", "/etc/tls", "tls-cert"),
        ],
    },
    "random_name_suffix=False": {"image": "alpine:3.20", "name": "fixed-name", "random_name_suffix": False},
    "xcom with everything": {
        "image": "alpine:3.20",
        "do_xcom_push": True,
        "volume_mounts": [k8s.V1VolumeMount(name="scratch", mount_path="/scratch")],
        "volumes": [k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource())],
        "xcom_sidecar_container_security_context": k8s.V1SecurityContext(run_as_user=1000),
    },
}


@pytest.mark.parametrize("kwargs", POD_SHAPING.values(), ids=POD_SHAPING.keys())
def test_pod_shaping_arguments_build_the_same_pod(kwargs: dict[str, Any]) -> None:
    theirs, ours = build_both(**kwargs)
    if kwargs.get("random_name_suffix") is False:
        assert ours["metadata"]["name"] == theirs["metadata"]["name"] == "fixed-name"
        kwargs_for_compare = {**kwargs, "random_name_suffix": True}
        theirs, ours = build_both(**kwargs_for_compare)
    assert_same_pod(theirs, ours, kwargs.get("labels") or {})


def test_xcom_sidecar_security_context_is_applied_like_the_official() -> None:
    theirs, ours = build_both(**POD_SHAPING["xcom with everything"])
    assert (
        container(ours, "airflow-xcom-sidecar")["securityContext"]
        == container(theirs, "airflow-xcom-sidecar")["securityContext"]
        == {"runAsUser": 1000}
    )


TEMPLATE = """\
apiVersion: v1
kind: Pod
metadata:
  name: from-template
  namespace: templated
  labels:
    source: template
  annotations:
    example.com/template: "yes"
spec:
  serviceAccountName: template-sa
  nodeSelector:
    pool: batch
  containers:
    - name: base
      image: alpine:3.19
      env:
        - name: FROM_TEMPLATE
          value: "1"
      resources:
        requests:
          cpu: 100m
    - name: helper
      image: busybox:1.36
      command: ["sh", "-c", "sleep 5"]
"""


def test_pod_template_file_builds_the_same_pod(tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(TEMPLATE)
    theirs, ours = build_both(
        pod_template_file=str(path), image="alpine:3.20", cmds=["echo"], arguments=["hi"]
    )
    assert_same_pod(theirs, ours, {"source": "template"})
    assert ours["metadata"]["namespace"] == "templated"
    assert container(ours, "base")["image"] == "alpine:3.20"  # arguments win over the template
    assert container(ours, "helper") == container(theirs, "helper")


def test_full_pod_spec_builds_the_same_pod() -> None:
    spec = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="from-spec", labels={"source": "full_pod_spec"}),
        spec=k8s.V1PodSpec(
            priority_class_name="high",
            containers=[k8s.V1Container(name="base", image="alpine:3.19", working_dir="/work")],
        ),
    )
    theirs, ours = build_both(full_pod_spec=spec, namespace="jobs", image="alpine:3.20")
    assert container(ours, "base")["workingDir"] == container(theirs, "base")["workingDir"] == "/work"
    for pod in (theirs, ours):
        container(pod, "base").pop("workingDir")
    assert_same_pod(theirs, ours, {"source": "full_pod_spec"})


def test_map_index_label_only_for_mapped_tasks_as_official() -> None:
    theirs_op, ours_op = construct_both(image="alpine:3.20", name="mapped")
    ti = FakeTI(task_id="say_hello_name", map_index=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        their_labels = as_dict(theirs_op.build_pod_request_obj(context(ti), dry_run=True))["metadata"][
            "labels"
        ]
    our_labels = as_dict(ours_op.build_pod(context(ti), None))["metadata"]["labels"]
    assert our_labels["map_index"] == their_labels["map_index"] == "3"
    _, unmapped = build_both(image="alpine:3.20")
    assert "map_index" not in unmapped["metadata"]["labels"]


def test_identity_label_values_that_need_no_cleaning_are_identical() -> None:
    """`kubectl get pods -l dag_id=...,task_id=...` keeps working; run_id differs only when cleaned."""
    ti = FakeTI(dag_id="etl", task_id="transform", run_id="manual_run_1", try_number=2)
    theirs_op, ours_op = construct_both(image="alpine:3.20")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = as_dict(theirs_op.build_pod_request_obj(context(ti), dry_run=True))["metadata"]["labels"]
    ours = as_dict(ours_op.build_pod(context(ti), None))["metadata"]["labels"]
    for key in ("dag_id", "task_id", "run_id", "try_number"):
        assert ours[key] == theirs[key]


def test_differences_by_design_are_exactly_the_documented_ones() -> None:
    theirs, ours = build_both(**GUIDE_HELLO_NAME)
    assert OFFICIAL_IDENTITY_LABELS - {"airflow_kpo_in_cluster"} <= set(theirs["metadata"]["labels"])
    assert not OFFICIAL_IDENTITY_LABELS & set(ours["metadata"]["labels"])
    assert ours["metadata"]["labels"]["kpo-async.io/managed"] == "true"
    assert {k for k in ours["metadata"]["annotations"] if k.startswith("kpo-async.io/")} == {
        "kpo-async.io/dag-id",
        "kpo-async.io/task-id",
        "kpo-async.io/run-id",
        "kpo-async.io/map-index",
        "kpo-async.io/try-number",
    }
    assert "finalizers" not in theirs["metadata"]
    assert ours["metadata"]["finalizers"] == ["kpo-async.io/task-seen"]
    _, ours_xcom = build_both(**GUIDE_XCOM_TRANSFORM)
    sidecar = container(ours_xcom, "airflow-xcom-sidecar")
    assert "/airflow/xcom/.kpo-async-done" in sidecar["command"][-1]
    docs = (Path(__file__).resolve().parents[2] / "docs" / "migration.md").read_text()
    phrases = ("kubernetes_pod_operator", "airflow_version", "kpo-async.io/managed", ".kpo-async-done")
    for phrase in (*phrases, "kpo-async.io/task-seen"):
        assert phrase in docs


def test_the_pod_name_is_stable_per_try_and_changes_between_tries() -> None:
    _, ours_op = construct_both(image="alpine:3.20", name="hello")
    first = ours_op.build_pod(context(FakeTI(try_number=1)), None).metadata.name
    again = ours_op.build_pod(context(FakeTI(try_number=1)), None).metadata.name
    second = ours_op.build_pod(context(FakeTI(try_number=2)), None).metadata.name
    assert first == again != second


# --- every official argument name ----------------------------------------------------------------------


def official_parameters() -> dict[str, inspect.Parameter]:
    parameters = dict(inspect.signature(KubernetesPodOperator.__init__).parameters)
    parameters.pop("self")
    return {n: p for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}


def test_the_provider_signature_is_the_one_compared() -> None:
    """A new provider release with new arguments must be looked at (and this list updated)."""
    assert len(official_parameters()) == 73


def test_every_official_argument_name_is_accepted() -> None:
    ours = inspect.signature(AsyncKubernetesPodOperator.__init__).parameters
    missing = [n for n in official_parameters() if n not in ours and n not in _ACCEPTED_WITHOUT_EFFECT]
    assert missing == []
    # Ours only accepts the official names plus `resources` (the guide's dict) and what the
    # official operator has no counterpart for (what to do when the cluster takes the pod away).
    extra = [n for n in ours if n not in official_parameters() and n not in ("self", "kwargs")]
    assert extra == ["resources", "disruption_relaunches", "relaunch_started_pods", "end_from_trigger"]
    # What is accepted without effect really is an official argument, not a made-up one.
    assert set(_ACCEPTED_WITHOUT_EFFECT) <= set(official_parameters())


def test_the_official_defaults_construct_both_operators() -> None:
    """Every official argument passed explicitly, with the official default value."""
    kwargs = {n: p.default for n, p in official_parameters().items()}
    kwargs.update(image="alpine:3.20", task_id="all_defaults")
    theirs, ours = construct_both(**kwargs)
    assert ours.on_finish_action == theirs.on_finish_action.value == "delete_pod"
    assert ours.base_container_name == theirs.base_container_name == "base"


NON_DEFAULT_VALUES: dict[str, Any] = {
    # connection
    "kubernetes_conn_id": "remote_k8s",
    "in_cluster": False,
    "cluster_context": "prod",
    "config_file": "/opt/airflow/kubeconfig",
    # lifecycle, waiting, logs
    "reattach_on_restart": False,
    "durable": False,
    "startup_timeout_seconds": 300,
    "startup_check_interval_seconds": 10,
    "schedule_timeout_seconds": 600,
    "get_logs": False,
    "base_container_status_polling_interval": 5,
    "init_container_logs": True,
    "container_logs": ["base"],
    "log_events_on_failure": True,
    "log_events_on_startup": False,
    "skip_on_exit_code": [99, 100],
    "deferrable": True,
    "poll_interval": 10,
    "log_pod_spec_on_failure": False,
    "on_finish_action": "keep_pod",
    "on_kill_action": "keep_pod",
    "logging_interval": 30,
    "container_name_log_prefix_enabled": False,
    "trigger_kwargs": {"some": "value"},
}


def test_every_official_argument_with_a_non_default_value_is_accepted() -> None:
    kwargs = {**POD_SHAPING["container"], **POD_SHAPING["pod spec"], **NON_DEFAULT_VALUES}
    kwargs.pop("image_pull_secrets")
    kwargs.update(image_pull_secrets="registry", do_xcom_push=True, task_id="everything")
    theirs, ours = construct_both(**kwargs)
    assert ours.on_finish_action == theirs.on_finish_action.value == "keep_pod"
    assert ours.on_kill_action == theirs.on_kill_action.value == "keep_pod"
    assert ours.deferrable and theirs.deferrable
    assert ours.skip_on_exit_code == theirs.skip_on_exit_code == [99, 100]
    assert ours.build_pod(context(), None).metadata.name.startswith("etl-")


@pytest.mark.parametrize(("value", "action"), [(True, "delete_pod"), (False, "keep_pod")])
def test_deprecated_is_delete_operator_pod_warns_and_maps_as_the_guide_says(value: bool, action: str) -> None:
    """The guide: 'is_delete_operator_pod: whether to delete the Pod when it reaches its final state'.

    Provider 10.x accepts it but ignores it (on_finish_action stays 'delete_pod'); we keep its meaning,
    with a DeprecationWarning, so a DAG that asked to keep its pods still does.
    """
    with pytest.warns(DeprecationWarning, match="is_delete_operator_pod"):
        ours = AsyncKubernetesPodOperator(task_id="t", image="alpine:3.20", is_delete_operator_pod=value)
    assert ours.on_finish_action == action
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = KubernetesPodOperator(task_id="t", image="alpine:3.20", is_delete_operator_pod=value)
    assert theirs.on_finish_action.value == "delete_pod"


def test_an_unknown_argument_is_still_rejected() -> None:
    """'Accepted' means something: a misspelt argument fails like with any operator."""
    with pytest.raises(TypeError, match="bogus_argument"):
        AsyncKubernetesPodOperator(task_id="t", image="alpine:3.20", bogus_argument=1)


def test_the_guides_templated_fields_are_templated() -> None:
    """The guide: 'image, cmds, arguments, env_vars, labels, config_file, pod_template_file, namespace'."""
    guide = {
        "image",
        "cmds",
        "arguments",
        "env_vars",
        "labels",
        "config_file",
        "pod_template_file",
        "namespace",
    }
    assert guide <= set(AsyncKubernetesPodOperator.template_fields)


# --- gaps found in the migration guide, now closed: each test held the official behaviour ------------


def test_the_guides_resources_dict_gives_the_same_resources_as_container_resources() -> None:
    guide = {"request_memory": "512Mi", "request_cpu": "500m", "limit_memory": "1Gi", "limit_cpu": "1"}
    ours = AsyncKubernetesPodOperator(task_id="t", image="alpine:3.20", resources=guide)
    theirs = KubernetesPodOperator(
        task_id="t",
        image="alpine:3.20",
        container_resources=k8s.V1ResourceRequirements(
            requests={"memory": "512Mi", "cpu": "500m"}, limits={"memory": "1Gi", "cpu": "1"}
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        their_pod = as_dict(theirs.build_pod_request_obj(context(), dry_run=True))
    assert (
        container(as_dict(ours.build_pod(context(), None)), "base")["resources"]
        == container(their_pod, "base")["resources"]
    )


def test_every_official_on_finish_action_is_accepted() -> None:
    for action in official.OnFinishAction:
        AsyncKubernetesPodOperator(task_id="t", image="alpine:3.20", on_finish_action=action.value)


def test_every_official_template_field_is_templated() -> None:
    missing = set(KubernetesPodOperator.template_fields) - set(AsyncKubernetesPodOperator.template_fields)
    assert missing <= {"trigger_kwargs"}  # accepted without effect, nothing to render


def test_the_cluster_policy_pod_mutation_hook_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.settings

    def mutate(pod: Any) -> None:
        pod.metadata.labels["policy"] = "applied"

    monkeypatch.setattr(airflow.settings, "pod_mutation_hook", mutate)
    monkeypatch.setattr(official, "pod_mutation_hook", mutate)
    theirs, ours = build_both(image="alpine:3.20")
    assert theirs["metadata"]["labels"]["policy"] == "applied"
    assert ours["metadata"]["labels"].get("policy") == "applied"


def test_full_pod_spec_namespace_is_used_like_the_official() -> None:
    spec = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(namespace="from-spec"),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base", image="alpine:3.20")]),
    )
    theirs, ours = build_both(full_pod_spec=spec)
    assert theirs["metadata"]["namespace"] == "from-spec"
    assert ours["metadata"]["namespace"] == "from-spec"


@pytest.fixture(scope="module")
def cluster() -> Any:
    """The embedded cluster on its own thread (for the sync `execute`)."""
    from kpo_async.testing.sim import SimCluster, SimConfig

    with SimCluster(SimConfig()).in_thread() as running:
        yield running


def test_the_official_pod_name_and_namespace_xcoms_are_pushed(cluster: Any) -> None:
    """Downstream tasks of official DAGs pull `pod_name` and `pod_namespace`."""
    from kpo_async.airflow_compat import TaskDeferred

    ours = AsyncKubernetesPodOperator(
        task_id="t",
        image="alpine:3.20",
        namespace="default",
        kubernetes_conn_id=None,
        config_file=cluster.kubeconfig_path,
    )
    ti = FakeTI(task_id="t")
    with pytest.raises(TaskDeferred):
        ours.execute(context(ti))
    assert ti.xcoms["pod_name"].startswith("t-")
    assert ti.xcoms.get("pod_namespace") == "default"


def test_durable_false_means_a_new_pod_for_each_try_like_the_official() -> None:
    theirs, ours = construct_both(image="alpine:3.20", durable=False)
    if Version(airflow.__version__).release >= (3, 3):
        assert theirs.reattach_on_restart is False
    else:  # the official ignores `durable` below 3.3 (with a warning); ours honours it everywhere
        assert theirs.reattach_on_restart is True
    assert ours.reattach_on_restart is False


def test_reattach_on_restart_none_means_the_default_like_the_official() -> None:
    """None is the official signature's default (meaning True); a wrapper passing it on must not flip it."""
    theirs, ours = construct_both(image="alpine:3.20", reattach_on_restart=None)
    assert theirs.reattach_on_restart is True
    assert ours.reattach_on_restart is True
