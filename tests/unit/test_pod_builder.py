from __future__ import annotations

import datetime as dt
import pickle
import re
from typing import Any

import pytest
from kubernetes.client import models as k8s
from kubernetes_asyncio.client import models as ak8s

from kpo_async.airflow_compat import AirflowException
from kpo_async.errors import InvalidArgumentError, KpoAsyncError
from kpo_async.identity import (
    MANAGED_LABEL,
    XCOM_MOUNT_PATH,
    XCOM_SIDECAR_NAME,
    XCOM_SIDECAR_SCRIPT,
    TaskIdentity,
    identity_annotations,
    identity_labels,
    pod_name,
    task_selector,
)
from kpo_async.k8s_objects import checked_api_dict, to_api_dict, to_v1pod
from kpo_async.pod_builder import PodArguments, build_pod, validate_arguments

LABEL_VALUE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SCHEDULED_RUN = "scheduled__2026-11-27T00:00:00+00:00"
IDENTITY = TaskIdentity(dag_id="etl", task_id="transform", run_id=SCHEDULED_RUN, try_number=2)


def build(identity: TaskIdentity | None = IDENTITY, **kwargs: Any) -> dict:
    kwargs.setdefault("image", "python:3.12-slim")
    template, full = kwargs.pop("template", None), kwargs.pop("full_pod_spec", None)
    pod = build_pod(PodArguments(**kwargs), identity=identity, template=template, full_pod_spec=full)
    return to_api_dict(pod)


def container(pod: dict, name: str = "base") -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def by_name(items: list[dict]) -> dict[str, dict]:
    return {item["name"]: item for item in items}


# --- errors ----------------------------------------------------------------------------------------------


def test_invalid_argument_error_message_attributes_and_pickling() -> None:
    err = InvalidArgumentError("image_pull_policy", "'Sometimes' is not allowed.", "use Always")
    assert str(err) == "Invalid image_pull_policy: 'Sometimes' is not allowed. Fix: use Always"
    assert (err.argument, err.problem, err.fix) == (
        "image_pull_policy",
        "'Sometimes' is not allowed",
        "use Always",
    )
    assert isinstance(err, (KpoAsyncError, AirflowException, ValueError))
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.argument, str(copy)) == (err.argument, str(err))


# --- identity --------------------------------------------------------------------------------------------


def test_identity_labels_keep_safe_values_and_omit_unmapped_map_index() -> None:
    labels = identity_labels(TaskIdentity("etl", "transform", "manual_1", map_index=-1, try_number=3))
    assert labels == {
        MANAGED_LABEL: "true",
        "dag_id": "etl",
        "task_id": "transform",
        "run_id": "manual_1",
        "try_number": "3",
    }
    assert identity_labels(TaskIdentity("etl", "t", "r", map_index=7))["map_index"] == "7"


@pytest.mark.parametrize(
    "run_id",
    [
        SCHEDULED_RUN,
        "manual__2026-11-27T10:11:12.123456+00:00",
        "manual:with+odd/chars",
        "x" * 200,
        "-leading-and-trailing-",
        "::::",
    ],
)
def test_identity_labels_are_label_safe(run_id: str) -> None:
    value = identity_labels(TaskIdentity("etl", "t", run_id))["run_id"]
    assert len(value) <= 63
    assert LABEL_VALUE.match(value), value
    assert value != run_id
    assert re.search(r"(^|-)[0-9a-f]{8}$", value)


def test_sanitized_label_values_stay_distinct() -> None:
    a = identity_labels(TaskIdentity("etl", "t", "run:1"))["run_id"]
    b = identity_labels(TaskIdentity("etl", "t", "run+1"))["run_id"]
    c = identity_labels(TaskIdentity("etl", "t", "x" * 100 + "1"))["run_id"]
    d = identity_labels(TaskIdentity("etl", "t", "x" * 100 + "2"))["run_id"]
    assert len({a, b}) == 2 and len({c, d}) == 2


def test_identity_annotations_hold_verbatim_values() -> None:
    assert identity_annotations(IDENTITY) == {
        "kpo-async.io/dag-id": "etl",
        "kpo-async.io/task-id": "transform",
        "kpo-async.io/run-id": SCHEDULED_RUN,
        "kpo-async.io/map-index": "-1",
        "kpo-async.io/try-number": "2",
    }


def test_task_selector() -> None:
    run = identity_labels(IDENTITY)["run_id"]
    base = f"{MANAGED_LABEL}=true,dag_id=etl,task_id=transform,run_id={run}"
    assert task_selector(IDENTITY, include_try=False) == f"{base},!map_index"
    assert task_selector(IDENTITY, include_try=True) == f"{base},!map_index,try_number=2"
    mapped = TaskIdentity("etl", "transform", "r", map_index=4)
    assert task_selector(mapped, include_try=False).endswith(",run_id=r,map_index=4")


# --- naming ----------------------------------------------------------------------------------------------


def test_pod_name_is_deterministic_per_try() -> None:
    first = pod_name("extract", identity=IDENTITY, random_name_suffix=True)
    again = pod_name("extract", identity=IDENTITY, random_name_suffix=True)
    retry = TaskIdentity("etl", "transform", SCHEDULED_RUN, try_number=3)
    other = pod_name("extract", identity=retry, random_name_suffix=True)
    assert first == again
    assert other != first
    assert re.fullmatch(r"extract-[0-9a-f]{8}", first)


def test_pod_name_without_identity_is_random() -> None:
    names = {pod_name("extract", identity=None, random_name_suffix=True) for _ in range(5)}
    assert len(names) == 5
    assert all(re.fullmatch(r"extract-[0-9a-f]{8}", name) for name in names)


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("Transform_Data", "transform-data"),
        ("My.Pod__Name", "my-pod-name"),
        ("--x--", "x"),
        ("___", "pod"),
    ],
)
def test_pod_name_sanitizes(base: str, expected: str) -> None:
    assert pod_name(base, identity=None, random_name_suffix=False) == expected


def test_pod_name_is_at_most_63_chars_and_a_dns_label() -> None:
    for suffix in (True, False):
        name = pod_name("a" * 61 + "-b" * 20, identity=IDENTITY, random_name_suffix=suffix)
        assert len(name) <= 63
        assert DNS_LABEL.match(name), name


def test_built_pod_name_sources() -> None:
    assert re.fullmatch(r"transform-[0-9a-f]{8}", build()["metadata"]["name"])
    assert build(name="Load_Step", random_name_suffix=False)["metadata"]["name"] == "load-step"
    template = {"metadata": {"name": "from-template"}, "spec": {"containers": [{"name": "base"}]}}
    assert build(template=template)["metadata"]["name"].startswith("from-template-")
    assert build(template=template, name="arg")["metadata"]["name"].startswith("arg-")
    assert build() == build()  # same inputs, same pod


def test_name_required_without_identity() -> None:
    with pytest.raises(InvalidArgumentError, match="Invalid name"):
        build(identity=None)
    assert build(identity=None, name="n")["metadata"]["name"].startswith("n-")


# --- arguments -> pod ------------------------------------------------------------------------------------


def test_minimal_pod() -> None:
    pod = build_pod(PodArguments(image="alpine", cmds=["echo"], arguments=["hi"]), identity=IDENTITY)
    assert isinstance(pod, ak8s.V1Pod)
    data = to_api_dict(pod)
    assert data["metadata"]["namespace"] == "default"
    assert data["metadata"]["labels"] == identity_labels(IDENTITY)
    assert data["metadata"]["annotations"] == identity_annotations(IDENTITY)
    assert data["spec"]["restartPolicy"] == "Never"
    assert data["spec"]["containers"] == [
        {
            "name": "base",
            "image": "alpine",
            "command": ["echo"],
            "args": ["hi"],
            "terminationMessagePolicy": "File",
        }
    ]


def test_user_labels_merge_but_identity_wins() -> None:
    pod = build(labels={"app": "etl", "dag_id": "spoofed", "empty": None}, annotations={"team": "data"})
    labels = pod["metadata"]["labels"]
    assert labels["app"] == "etl" and labels["dag_id"] == "etl" and labels["empty"] == ""
    assert pod["metadata"]["annotations"]["team"] == "data"
    assert build(node_selector={"pool": None})["spec"]["nodeSelector"] == {"pool": ""}


def test_scalar_pod_arguments() -> None:
    pod = build(
        namespace="jobs",
        service_account_name="runner",
        automount_service_account_token=False,
        hostnetwork=True,
        dnspolicy="ClusterFirstWithHostNet",
        schedulername="custom",
        priority_class_name="high",
        termination_grace_period=0,
        active_deadline_seconds=600,
        runtime_class_name="gvisor",
        node_selector={"disk": "ssd"},
        image_pull_policy="Always",
        termination_message_policy="FallbackToLogsOnError",
        hostname="worker",
        subdomain="jobs",
    )
    spec = pod["spec"]
    assert pod["metadata"]["namespace"] == "jobs"
    assert spec["serviceAccountName"] == "runner"
    assert spec["automountServiceAccountToken"] is False
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["schedulerName"] == "custom"
    assert spec["priorityClassName"] == "high"
    assert spec["terminationGracePeriodSeconds"] == 0
    assert spec["activeDeadlineSeconds"] == 600
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert (spec["hostname"], spec["subdomain"]) == ("worker", "jobs")
    assert container(pod)["imagePullPolicy"] == "Always"
    assert container(pod)["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_env_vars_dict() -> None:
    pod = build(env_vars={"NAME_TO_GREET": "world", "EMPTY": None})
    assert container(pod)["env"] == [{"name": "NAME_TO_GREET", "value": "world"}, {"name": "EMPTY"}]


def test_env_vars_list_of_sync_and_asyncio_objects_with_value_from() -> None:
    ref = k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name="creds", key="token"))
    env = [
        k8s.V1EnvVar(name="TOKEN", value_from=ref),
        ak8s.V1EnvVar(name="MODE", value="fast"),
        {"name": "RAW", "value": "1"},
    ]
    runtime = [k8s.V1EnvVar(name="POD_IP", value_from={"fieldRef": {"fieldPath": "status.podIP"}})]
    pod = build(env_vars=env, pod_runtime_info_envs=runtime)
    assert container(pod)["env"] == [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MODE", "value": "fast"},
        {"name": "RAW", "value": "1"},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]


def test_sync_and_asyncio_objects_and_dicts_are_accepted() -> None:
    pod = build(
        volumes=[
            k8s.V1Volume(name="sync", config_map=k8s.V1ConfigMapVolumeSource(name="cm")),
            ak8s.V1Volume(name="async", empty_dir=ak8s.V1EmptyDirVolumeSource(size_limit="1Gi")),
            {"name": "api", "persistentVolumeClaim": {"claimName": "data"}},
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="sync", mount_path="/etc/cm", read_only=True),
            {"name": "api", "mount_path": "/data"},  # python-client spelling is renamed
        ],
        ports=[k8s.V1ContainerPort(container_port=8080, name="http")],
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        affinity=k8s.V1Affinity(
            node_affinity=k8s.V1NodeAffinity(
                required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(
                    node_selector_terms=[
                        k8s.V1NodeSelectorTerm(
                            match_expressions=[
                                k8s.V1NodeSelectorRequirement(key="zone", operator="In", values=["eu"])
                            ]
                        )
                    ]
                )
            )
        ),
        security_context=k8s.V1PodSecurityContext(run_as_user=1000, fs_group=2000),
        container_security_context={"allowPrivilegeEscalation": False},
        env_from=[k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="settings"))],
        configmaps=["more-settings"],
        init_containers=[k8s.V1Container(name="init", image="busybox", command=["true"])],
        host_aliases=[k8s.V1HostAlias(ip="10.0.0.1", hostnames=["db"])],
    )
    spec, base = pod["spec"], container(pod)
    assert by_name(spec["volumes"]) == {
        "sync": {"name": "sync", "configMap": {"name": "cm"}},
        "async": {"name": "async", "emptyDir": {"sizeLimit": "1Gi"}},
        "api": {"name": "api", "persistentVolumeClaim": {"claimName": "data"}},
    }
    assert base["volumeMounts"] == [
        {"name": "sync", "mountPath": "/etc/cm", "readOnly": True},
        {"name": "api", "mountPath": "/data"},
    ]
    assert base["ports"] == [{"containerPort": 8080, "name": "http"}]
    assert base["securityContext"] == {"allowPrivilegeEscalation": False}
    assert base["envFrom"] == [
        {"configMapRef": {"name": "settings"}},
        {"configMapRef": {"name": "more-settings"}},
    ]
    assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0] == {
        "key": "zone",
        "operator": "In",
        "values": ["eu"],
    }
    assert spec["securityContext"] == {"runAsUser": 1000, "fsGroup": 2000}
    assert spec["initContainers"] == [{"name": "init", "image": "busybox", "command": ["true"]}]
    assert spec["hostAliases"] == [{"ip": "10.0.0.1", "hostnames": ["db"]}]


def test_image_pull_secrets_string_and_list() -> None:
    expected = [{"name": "a"}, {"name": "b"}]
    assert build(image_pull_secrets="a, b")["spec"]["imagePullSecrets"] == expected
    assert build(image_pull_secrets="a,b")["spec"]["imagePullSecrets"] == expected
    listed = [k8s.V1LocalObjectReference(name="a"), {"name": "b"}]
    assert build(image_pull_secrets=listed)["spec"]["imagePullSecrets"] == expected


def test_secrets_from_the_provider() -> None:
    secret_module = pytest.importorskip("airflow.providers.cncf.kubernetes.secret")
    secrets = [
        secret_module.Secret("env", "token", "creds", "api-token"),
        secret_module.Secret("env", None, "all-creds"),
        secret_module.Secret("volume", "/etc/creds", "creds"),
    ]
    pod = build(secrets=secrets)
    base = container(pod)
    assert base["env"] == [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "api-token"}}}
    ]
    assert base["envFrom"] == [{"secretRef": {"name": "all-creds"}}]
    (volume,) = pod["spec"]["volumes"]
    assert volume["secret"] == {"secretName": "creds"}
    assert base["volumeMounts"] == [{"name": volume["name"], "mountPath": "/etc/creds", "readOnly": True}]
    assert build(secrets=secrets) == pod


# --- resources -------------------------------------------------------------------------------------------


def test_resources_dict_keys_from_the_guide() -> None:
    resources = {
        "request_memory": "512Mi",
        "request_cpu": "500m",
        "request_ephemeral_storage": "1Gi",
        "limit_memory": "1Gi",
        "limit_cpu": 2,
        "limit_gpu": 1,
        "limit_ephemeral_storage": "2Gi",
    }
    assert container(build(resources=resources))["resources"] == {
        "requests": {"memory": "512Mi", "cpu": "500m", "ephemeral-storage": "1Gi"},
        "limits": {"memory": "1Gi", "cpu": "2", "nvidia.com/gpu": "1", "ephemeral-storage": "2Gi"},
    }


@pytest.mark.parametrize(
    "value",
    [
        k8s.V1ResourceRequirements(limits={"cpu": "1"}, requests={"memory": "1Gi"}),
        ak8s.V1ResourceRequirements(limits={"cpu": "1"}, requests={"memory": "1Gi"}),
        {"limits": {"cpu": "1"}, "requests": {"memory": "1Gi"}},
    ],
)
def test_container_resources_objects(value: Any) -> None:
    expected = {"limits": {"cpu": "1"}, "requests": {"memory": "1Gi"}}
    assert container(build(container_resources=value))["resources"] == expected
    assert container(build(resources=value))["resources"] == expected


def test_unknown_resources_key_names_it_and_lists_valid_ones() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        build(resources={"limit_memroy": "1Gi"})
    assert info.value.argument == "resources"
    assert "'limit_memroy'" in info.value.problem
    assert all(key in info.value.fix for key in ("request_memory", "limit_gpu", "limit_ephemeral_storage"))


# --- precedence ------------------------------------------------------------------------------------------

TEMPLATE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "tpl", "namespace": "tpl-ns", "labels": {"source": "template", "tier": "t"}},
    "spec": {
        "serviceAccountName": "tpl-sa",
        "priorityClassName": "tpl-priority",
        "schedulerName": "tpl-scheduler",
        "automountServiceAccountToken": True,
        "restartPolicy": "OnFailure",
        "nodeSelector": {"pool": "tpl"},
        "tolerations": [{"key": "tpl", "operator": "Exists"}],
        "volumes": [{"name": "shared", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}],
        "containers": [
            {
                "name": "base",
                "image": "template-image",
                "command": ["tpl-cmd"],
                "env": [{"name": "A", "value": "tpl"}, {"name": "B", "value": "tpl"}],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                "resources": {"limits": {"memory": "1Gi"}},
            },
            {"name": "proxy", "image": "envoy"},
        ],
    },
}


def test_template_alone() -> None:
    pod = build(template=TEMPLATE, image=None)
    assert pod["metadata"]["namespace"] == "tpl-ns"
    assert pod["metadata"]["labels"]["source"] == "template"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["base", "proxy"]
    assert container(pod)["image"] == "template-image"
    assert pod["spec"]["restartPolicy"] == "Never"  # forced, as by the official operator


def test_precedence_template_then_full_pod_spec_then_arguments() -> None:
    full = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(labels={"source": "full", "full": "yes"}, namespace="full-ns"),
        spec=k8s.V1PodSpec(
            service_account_name="full-sa",
            priority_class_name="full-priority",
            node_selector={"zone": "full"},
            volumes=[k8s.V1Volume(name="cache", host_path=k8s.V1HostPathVolumeSource(path="/cache"))],
            containers=[
                k8s.V1Container(
                    name="base",
                    image="full-image",
                    env=[k8s.V1EnvVar(name="B", value="full"), k8s.V1EnvVar(name="C", value="full")],
                )
            ],
        ),
    )
    pod = build(
        template=TEMPLATE,
        full_pod_spec=full,
        image="arg-image",
        labels={"source": "args"},
        service_account_name="arg-sa",
        env_vars={"C": "arg", "D": "arg"},
        volumes=[k8s.V1Volume(name="data", empty_dir=k8s.V1EmptyDirVolumeSource())],
        volume_mounts=[k8s.V1VolumeMount(name="data", mount_path="/data")],
        container_resources=k8s.V1ResourceRequirements(requests={"cpu": "1"}),
        automount_service_account_token=False,
    )
    meta, spec, base = pod["metadata"], pod["spec"], container(pod)
    assert meta["name"].startswith("tpl-")
    assert meta["namespace"] == "full-ns"
    assert {k: meta["labels"][k] for k in ("source", "tier", "full")} == {
        "source": "args",
        "tier": "t",
        "full": "yes",
    }
    assert spec["serviceAccountName"] == "arg-sa"
    assert spec["priorityClassName"] == "full-priority"
    assert spec["schedulerName"] == "tpl-scheduler"
    assert spec["automountServiceAccountToken"] is False
    assert spec["nodeSelector"] == {"pool": "tpl", "zone": "full"}
    assert spec["tolerations"] == [{"key": "tpl", "operator": "Exists"}]
    assert by_name(spec["volumes"]) == {
        "shared": {"name": "shared", "emptyDir": {}},
        "cache": {"name": "cache", "hostPath": {"path": "/cache"}},
        "data": {"name": "data", "emptyDir": {}},
    }
    assert base["image"] == "arg-image"
    assert base["command"] == ["tpl-cmd"]
    assert base["env"] == [
        {"name": "A", "value": "tpl"},
        {"name": "B", "value": "full"},
        {"name": "C", "value": "arg"},
        {"name": "D", "value": "arg"},
    ]
    assert base["volumeMounts"] == [
        {"name": "shared", "mountPath": "/shared"},
        {"name": "data", "mountPath": "/data"},
    ]
    assert base["resources"] == {"limits": {"memory": "1Gi"}, "requests": {"cpu": "1"}}
    assert container(pod, "proxy") == {"name": "proxy", "image": "envoy"}


def test_full_pod_spec_dict_and_asyncio_object_are_accepted() -> None:
    as_dict = {"metadata": {"labels": {"x": "1"}}, "spec": {"containers": [{"name": "base", "image": "img"}]}}
    as_async = ak8s.V1Pod(
        metadata=ak8s.V1ObjectMeta(labels={"x": "1"}),
        spec=ak8s.V1PodSpec(containers=[ak8s.V1Container(name="base", image="img")]),
    )
    assert build(full_pod_spec=as_dict, image=None) == build(full_pod_spec=as_async, image=None)
    assert container(build(full_pod_spec=as_dict, image=None))["image"] == "img"


def test_base_container_is_the_named_one_else_the_first_renamed() -> None:
    named_second = {
        "spec": {"containers": [{"name": "proxy", "image": "envoy"}, {"name": "base", "image": "x"}]}
    }
    pod = build(template=named_second, image="mine")
    assert pod["spec"]["containers"] == [
        {"name": "proxy", "image": "envoy"},
        {"name": "base", "image": "mine", "terminationMessagePolicy": "File"},
    ]
    first_only = {"spec": {"containers": [{"name": "main", "image": "x", "workingDir": "/w"}]}}
    (only,) = build(template=first_only, image="mine")["spec"]["containers"]
    assert only == {"name": "base", "image": "mine", "workingDir": "/w", "terminationMessagePolicy": "File"}


def test_custom_base_container_name() -> None:
    template = {"spec": {"containers": [{"name": "side", "image": "s"}, {"name": "main", "image": "m"}]}}
    pod = build(template=template, base_container_name="main", image=None, do_xcom_push=True)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["side", "main", XCOM_SIDECAR_NAME]
    assert container(pod, "main")["volumeMounts"] == [{"name": "xcom", "mountPath": XCOM_MOUNT_PATH}]


def test_init_containers_merge_by_name() -> None:
    template = {
        "spec": {
            "containers": [{"name": "base", "image": "x"}],
            "initContainers": [{"name": "setup", "image": "old", "command": ["setup"]}],
        }
    }
    pod = build(
        template=template,
        init_containers=[{"name": "setup", "image": "new"}, {"name": "extra", "image": "e"}],
    )
    assert pod["spec"]["initContainers"] == [
        {"name": "setup", "image": "new", "command": ["setup"]},
        {"name": "extra", "image": "e"},
    ]


# --- xcom sidecar ----------------------------------------------------------------------------------------


def test_no_sidecar_without_do_xcom_push() -> None:
    pod = build()
    assert [c["name"] for c in pod["spec"]["containers"]] == ["base"]
    assert "volumes" not in pod["spec"]


def test_sidecar_injection() -> None:
    pod = build(do_xcom_push=True)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["base", XCOM_SIDECAR_NAME]
    assert pod["spec"]["volumes"] == [{"name": "xcom", "emptyDir": {}}]
    assert container(pod)["volumeMounts"] == [{"name": "xcom", "mountPath": XCOM_MOUNT_PATH}]
    assert container(pod, XCOM_SIDECAR_NAME) == {
        "name": XCOM_SIDECAR_NAME,
        "image": "alpine:3.20",
        "command": ["sh", "-c", XCOM_SIDECAR_SCRIPT],
        "volumeMounts": [{"name": "xcom", "mountPath": XCOM_MOUNT_PATH}],
        "resources": {"requests": {"cpu": "1m", "memory": "10Mi"}},
    }


def test_sidecar_options_and_idempotence() -> None:
    template = {
        "spec": {
            "volumes": [{"name": "xcom", "emptyDir": {"medium": "Memory"}}],
            "containers": [
                {
                    "name": "base",
                    "image": "x",
                    "volumeMounts": [{"name": "xcom", "mountPath": XCOM_MOUNT_PATH}],
                },
                {"name": XCOM_SIDECAR_NAME, "image": "stale"},
            ],
        }
    }
    pod = build(
        template=template,
        do_xcom_push=True,
        xcom_sidecar_image="registry.local/alpine:3.20",
        xcom_sidecar_resources={"request_cpu": "5m", "limit_memory": "20Mi"},
        xcom_sidecar_container_security_context={"runAsNonRoot": True},
    )
    assert pod["spec"]["volumes"] == [{"name": "xcom", "emptyDir": {"medium": "Memory"}}]
    assert container(pod)["volumeMounts"] == [{"name": "xcom", "mountPath": XCOM_MOUNT_PATH}]
    sidecars = [c for c in pod["spec"]["containers"] if c["name"] == XCOM_SIDECAR_NAME]
    assert len(sidecars) == 1
    assert sidecars[0]["image"] == "registry.local/alpine:3.20"
    assert sidecars[0]["resources"] == {"requests": {"cpu": "5m"}, "limits": {"memory": "20Mi"}}
    assert sidecars[0]["securityContext"] == {"runAsNonRoot": True}


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"name": "my pod"}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": "___"}, "name"),
        ({"image": "two words"}, "image"),
        ({"image": ""}, "image"),
        ({"cmds": "echo hi"}, "cmds"),
        ({"arguments": ["ok", 3]}, "arguments"),
        ({"labels": {"app": 3}}, "labels"),
        ({"labels": ["app"]}, "labels"),
        ({"annotations": {"note": 1}}, "annotations"),
        ({"resources": {"limit_memroy": "1Gi"}}, "resources"),
        ({"resources": {"limit_cpu": "1"}, "container_resources": {"limits": {}}}, "resources"),
        ({"xcom_sidecar_resources": {"cpu": "1m"}, "do_xcom_push": True}, "xcom_sidecar_resources"),
        ({"env_vars": {"PORT": 8080}}, "env_vars"),
        ({"env_vars": "A=1"}, "env_vars"),
        ({"env_vars": [{"value": "no name"}]}, "env_vars"),
        ({"ports": [k8s.V1ContainerPort(container_port="http")]}, "ports"),
        ({"ports": [8080]}, "ports"),
        ({"termination_grace_period": -1}, "termination_grace_period"),
        ({"active_deadline_seconds": 0}, "active_deadline_seconds"),
        ({"active_deadline_seconds": "60"}, "active_deadline_seconds"),
        ({"volumes": k8s.V1Volume(name="v")}, "volumes"),
        ({"volumes": [{"name": "v", "emptyDirr": {}}]}, "volumes"),
        ({"volumes": ["v"]}, "volumes"),
        ({"volume_mounts": [{"name": "v"}]}, "volume_mounts"),
        ({"tolerations": [{"key": "k", "tolerationSeconds": "soon"}]}, "tolerations"),
        ({"affinity": "zone=eu"}, "affinity"),
        ({"security_context": {"runAsUser": "root"}}, "security_context"),
        ({"init_containers": [{"image": "no-name"}]}, "init_containers"),
        ({"image_pull_secrets": 3}, "image_pull_secrets"),
        ({"configmaps": "cm"}, "configmaps"),
        ({"secrets": ["creds"]}, "secrets"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, argument: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_arguments(PodArguments(**kwargs))
        build(**kwargs)
    assert info.value.argument == argument
    assert str(info.value).startswith(f"Invalid {argument}: ")
    assert "Fix: " in str(info.value)


def test_missing_image_is_reported() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        build(image=None)
    assert info.value.argument == "image"
    validate_arguments(PodArguments())  # a template may still provide it


def test_unknown_field_suggests_the_right_one() -> None:
    with pytest.raises(InvalidArgumentError, match=r"'mountPth' \(did you mean 'mountPath'\?\)"):
        build(volume_mounts=[{"name": "v", "mountPth": "/x"}])


def test_bad_full_pod_spec_and_template_are_named() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        build(full_pod_spec={"spec": {"containers": [{"name": "base", "env": {"A": "1"}}]}})
    assert info.value.argument == "full_pod_spec"
    assert "spec.containers[0].env must be a list" in info.value.problem
    with pytest.raises(InvalidArgumentError) as info:
        build(template={"spec": {"containerz": []}})
    assert info.value.argument == "pod_template_file"


# --- k8s_objects -----------------------------------------------------------------------------------------


def test_to_api_dict_handles_both_clients_and_datetimes() -> None:
    when = dt.datetime(2026, 11, 27, 1, 2, 3, tzinfo=dt.timezone.utc)
    sync = k8s.V1ObjectMeta(name="p", creation_timestamp=when, labels={"a": "b"})
    asyncio_meta = ak8s.V1ObjectMeta(name="p", creation_timestamp=when, labels={"a": "b"})
    expected = {"name": "p", "creationTimestamp": "2026-11-27T01:02:03Z", "labels": {"a": "b"}}
    assert to_api_dict(sync) == to_api_dict(asyncio_meta) == expected
    naive = dt.datetime(2026, 1, 1, 0, 0, 0, 500)
    assert to_api_dict(naive) == "2026-01-01T00:00:00.000500Z"


def test_python_keys_are_renamed_only_for_known_models() -> None:
    data = {"container_port": 80, "hostIP": "0.0.0.0"}
    checked = checked_api_dict(data, "V1ContainerPort", argument="ports")
    assert checked == {"containerPort": 80, "hostIP": "0.0.0.0"}
    assert to_api_dict(data) == data
    labels = {"labels": {"snake_key": "v"}}  # map keys are data, never renamed
    assert checked_api_dict(labels, "V1ObjectMeta", argument="labels") == labels
    with pytest.raises(TypeError):
        to_api_dict(object())


def test_to_v1pod_round_trip() -> None:
    data = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "creationTimestamp": "2026-11-27T01:02:03Z"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "i",
                    "env": [{"name": "PORT", "value": 8080}],
                    "livenessProbe": {"httpGet": {"port": "http"}},
                }
            ]
        },
    }
    pod = to_v1pod(data)
    assert isinstance(pod, ak8s.V1Pod)
    assert pod.metadata.creation_timestamp == dt.datetime(2026, 11, 27, 1, 2, 3, tzinfo=dt.timezone.utc)
    assert pod.spec.containers[0].env[0].value == "8080"  # coerced like the official provider does
    assert pod.spec.containers[0].liveness_probe.http_get.port == "http"
    data["spec"]["containers"][0]["env"][0]["value"] = "8080"
    assert to_api_dict(pod) == data


def test_checked_api_dict_reports_unknown_fields() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        checked_api_dict({"name": "c", "imagePullPolicyy": "Always"}, "V1Container", argument="c")
    assert "unknown field 'imagePullPolicyy' (did you mean 'imagePullPolicy'?)" in str(info.value)
