"""Behaviours of the official KubernetesPodOperator that a migrated DAG relies on (issue 11).

Each task runs against the embedded cluster over loopback, driven as Airflow does
(`kpo_async.testing.harness`); templates are rendered by Airflow's own `render_template_fields`.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import models as k8s
from structlog.testing import capture_logs

from kpo_async.testing import harness
from kpo_async.testing.harness import FakeTI, context_for, make_operator
from tests.core.test_operator import list_pods, pod_lines

DS = "2026-03-04"


def airflow_context(ti: FakeTI) -> dict[str, Any]:
    return {**context_for(ti), "ds": DS, "ds_nodash": DS.replace("-", ""), "params": {"mem": "64Mi"}}


def test_jinja_inside_kubernetes_objects_is_rendered(sim_thread) -> None:
    """As the official operator: templated attributes of V1 objects in template fields are rendered."""
    op = make_operator(
        sim_thread,
        name="nested-jinja",
        cmds=["sh", "-c"],
        arguments=['echo "env DAY=$DAY"'],
        on_finish_action="keep_pod",
        env_vars=[k8s.V1EnvVar(name="DAY", value="{{ ds }}")],
        env_from=[
            k8s.V1EnvFromSource(
                config_map_ref=k8s.V1ConfigMapEnvSource(name="cm-{{ ds_nodash }}", optional=True)
            ),
            k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="sec-{{ ds_nodash }}", optional=True)),
        ],
        volumes=[
            k8s.V1Volume(
                name="data",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name="pvc-{{ ds_nodash }}"
                ),
            ),
            k8s.V1Volume(name="conf", config_map=k8s.V1ConfigMapVolumeSource(name="conf-{{ ds_nodash }}")),
            k8s.V1Volume(name="sec", secret=k8s.V1SecretVolumeSource(secret_name="sec-{{ ds_nodash }}")),
        ],
        volume_mounts=[k8s.V1VolumeMount(name="data", mount_path="/data", sub_path="{{ ds }}")],
        container_resources=k8s.V1ResourceRequirements(limits={"memory": "{{ params.mem }}"}),
    )
    ti = FakeTI(op.task_id)
    op.render_template_fields(airflow_context(ti))
    with capture_logs() as logs:
        harness.resume(op, ti, harness.submit(op, ti))
    assert f"env DAY={DS}" in pod_lines(logs)
    (pod,) = [p for p in list_pods(sim_thread) if p["metadata"]["name"].startswith("nested-jinja-")]
    assert "{{" not in json.dumps(pod), "an unrendered template reached the pod"
    day = DS.replace("-", "")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == f"pvc-{day}"
    assert volumes["conf"]["configMap"]["name"] == f"conf-{day}"
    assert volumes["sec"]["secret"]["secretName"] == f"sec-{day}"
    base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
    assert [e.get("configMapRef", e.get("secretRef"))["name"] for e in base["envFrom"]] == [
        f"cm-{day}",
        f"sec-{day}",
    ]
    assert next(m for m in base["volumeMounts"] if m["name"] == "data")["subPath"] == DS
    assert base["resources"]["limits"]["memory"] == "64Mi"
