"""Behaviours of the official KubernetesPodOperator that a migrated DAG relies on (issue 11).

Each task runs against the embedded cluster over loopback, driven as Airflow does
(`kpo_async.testing.harness`); templates are rendered by Airflow's own `render_template_fields`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kubernetes.client import models as k8s
from kubernetes_asyncio import client, config

from kpo_async.testing import harness
from kpo_async.testing.harness import FakeTI, context_for, make_operator
from kpo_async.testing.logcapture import capture_logs
from tests.core.test_operator import list_pods, pod_lines

DS = "2026-03-04"


def airflow_context(ti: FakeTI) -> dict[str, Any]:
    return {**context_for(ti), "ds": DS, "ds_nodash": DS.replace("-", ""), "params": {"mem": "64Mi"}}


def create_referenced_objects(sim, day: str) -> None:
    """The claim, ConfigMap and Secret the rendered names point at (a missing one stops the pod)."""

    async def go() -> None:
        api = await config.new_client_from_config(config_file=sim.kubeconfig_path)
        async with api:
            core = client.CoreV1Api(api)
            claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}
            await core.create_namespaced_persistent_volume_claim(
                "default", {"metadata": {"name": f"pvc-{day}"}, "spec": claim}
            )
            await core.create_namespaced_config_map("default", {"metadata": {"name": f"conf-{day}"}})
            await core.create_namespaced_secret("default", {"metadata": {"name": f"sec-{day}"}})

    asyncio.run(go())


def test_jinja_inside_kubernetes_objects_is_rendered(sim_thread) -> None:
    """As the official operator: templated attributes of V1 objects in template fields are rendered."""
    create_referenced_objects(sim_thread, DS.replace("-", ""))
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


# -- callbacks ---------------------------------------------------------------------------------------

from airflow.providers.cncf.kubernetes.callbacks import KubernetesPodOperatorCallback  # noqa: E402

CALLS: list[tuple[str, str, dict[str, Any]]] = []


class RecordingCallback(KubernetesPodOperatorCallback):
    """An official callback class, unchanged: records each call with its mode and arguments."""

    @staticmethod
    def on_pod_manifest_created(*, pod_request, client, mode, context, operator, **kwargs) -> None:
        CALLS.append(("on_pod_manifest_created", mode, {"pod": pod_request, "client": client}))

    @staticmethod
    def on_pod_creation(*, pod, client, mode, context, operator, **kwargs) -> None:
        CALLS.append(("on_pod_creation", mode, {"pod": pod, "client": client}))

    @staticmethod
    def on_pod_starting(*, pod, client, mode, context, operator, **kwargs) -> None:
        CALLS.append(("on_pod_starting", mode, {"pod": pod}))

    @staticmethod
    def progress_callback(*, line, client, mode, container_name, timestamp, pod, **kwargs) -> None:
        CALLS.append(("progress_callback", mode, {"line": line, "container": container_name}))

    @staticmethod
    def on_operator_resuming(*, pod, event, client, mode, operator, context, **kwargs) -> None:
        CALLS.append(("on_operator_resuming", mode, {"event": event}))

    @staticmethod
    def on_pod_completion(*, pod, client, mode, context, operator, **kwargs) -> None:
        CALLS.append(("on_pod_completion", mode, {"pod": pod}))

    @staticmethod
    def on_pod_teardown(*, pod, client, mode, context, operator, **kwargs) -> None:
        CALLS.append(("on_pod_teardown", mode, {"pod": pod}))

    @staticmethod
    def on_pod_cleanup(*, pod, client, mode, context, operator, **kwargs) -> None:
        CALLS.append(("on_pod_cleanup", mode, {"pod": pod, "operator": operator}))


def test_official_callbacks_are_called_at_each_moment(sim_thread) -> None:
    CALLS.clear()
    op = make_operator(
        sim_thread,
        name="callbacks",
        cmds=["sh", "-c"],
        arguments=["echo one; echo two"],
        callbacks=RecordingCallback,
    )
    harness.run_task(op)
    moments = [name for name, _, _ in CALLS if name != "progress_callback"]
    assert moments == [
        "on_pod_manifest_created",
        "on_pod_creation",
        "on_pod_starting",  # on the triggerer
        "on_operator_resuming",
        "on_pod_completion",
        "on_pod_teardown",
        "on_pod_cleanup",
    ]
    modes = {name: mode for name, mode, _ in CALLS}
    assert modes["on_pod_creation"] == "sync" and modes["on_pod_starting"] == "async"
    lines = [(kw["container"], kw["line"]) for name, _, kw in CALLS if name == "progress_callback"]
    assert lines == [("base", "one"), ("base", "two")]
    created = next(kw for name, _, kw in CALLS if name == "on_pod_creation")
    assert created["pod"].metadata.name.startswith("callbacks-")
    # The official's sync client, usable from a callback on the worker.
    assert created["client"].read_namespace("default").metadata.name == "default"
    resumed = next(kw for name, _, kw in CALLS if name == "on_operator_resuming")
    assert resumed["event"]["status"] == "success"
    assert next(kw for name, _, kw in CALLS if name == "on_pod_cleanup")["operator"] is op


def test_a_callback_class_the_triggerer_cannot_import_is_skipped_with_a_warning(sim_thread) -> None:
    CALLS.clear()
    op = make_operator(sim_thread, name="callbacks-lost", cmds=["sh", "-c"], arguments=["echo hi"])
    ti = FakeTI(op.task_id)
    classpath, kwargs = harness.stored_kwargs(harness.submit(op, ti))
    kwargs["callbacks"] = ["dag_file_module_not_on_the_triggerer.MyCallback"]
    with capture_logs() as logs:
        event = harness.run_trigger(harness.trigger_from(classpath, kwargs))
    assert event["status"] == "success"
    warnings = [e["event"] for e in logs if "cannot be imported on the triggerer" in str(e.get("event"))]
    assert len(warnings) == 1 and "MyCallback" in warnings[0]
    op.execute_complete(context_for(ti), event)


# -- the official subclass API --------------------------------------------------------------------


def test_dry_run_prints_the_pod_yaml_and_creates_nothing(sim_thread, capsys) -> None:
    import yaml

    op = make_operator(
        sim_thread, name="dry-run", cmds=["sh", "-c"], arguments=["echo hi"], labels={"a": "b"}
    )
    op.dry_run()
    pod = yaml.safe_load(capsys.readouterr().out)
    assert pod["kind"] == "Pod" and pod["metadata"]["name"].startswith("dry-run-")
    assert pod["metadata"]["labels"]["a"] == "b"
    assert next(c for c in pod["spec"]["containers"] if c["name"] == "base")["args"] == ["echo hi"]
    assert not [p for p in list_pods(sim_thread) if p["metadata"]["name"].startswith("dry-run-")]


def test_a_subclass_drives_the_pod_with_the_official_method_names(sim_thread) -> None:
    """What GKE/EKS-style subclasses call: build_pod_request_obj, get_or_create_pod, find_pod, client,
    cleanup, hook."""
    op = make_operator(sim_thread, name="subclass-api", cmds=["sh", "-c"], arguments=["sleep 30"])
    ti = FakeTI(op.task_id)
    context = context_for(ti)
    request = op.build_pod_request_obj(context)
    created = op.get_or_create_pod(request, context)
    assert created.metadata.name == request.metadata.name and created.metadata.uid
    assert op.get_or_create_pod(request, context).metadata.uid == created.metadata.uid  # adopted, not twice
    found = op.find_pod("default", context)
    assert found is not None and found.metadata.uid == created.metadata.uid
    # The official `client`: a sync CoreV1Api on the task's cluster (callbacks and subclasses use it).
    read = op.client.read_namespaced_pod(created.metadata.name, "default")
    assert read.metadata.uid == created.metadata.uid
    op.cleanup(pod=found, remote_pod=found, context=context)  # on_finish_action=delete_pod
    assert op.find_pod("default", context) is None
    assert op.hook.kubernetes_conn_id == "kubernetes_default"


# -- decorators ------------------------------------------------------------------------------------


def test_the_kpo_async_cmd_decorator_runs_the_returned_command(sim_thread) -> None:
    """``@task.kpo_async_cmd`` (found through the provider's task-decorators) is deferrable by default."""
    from airflow.sdk import DAG, task

    from kpo_async import AsyncKubernetesPodOperator

    with DAG("decorated", schedule=None) as dag:

        @task.kpo_async_cmd(
            kubernetes_conn_id=None,
            config_file=str(sim_thread.kubeconfig_path),
            namespace="default",
            image="alpine:3.20",
        )
        def hello(who: str) -> list[str]:
            return ["sh", "-c", f"echo hello {who}"]

        hello("world")

    op = dag.get_task("hello")
    assert isinstance(op, AsyncKubernetesPodOperator) and op.deferrable
    with capture_logs() as logs:
        event, _ = harness.run_task(op)
    assert event["status"] == "success"
    assert "hello world" in pod_lines(logs)
    assert event["pod_name"].startswith("k8s-airflow-pod-hello-")


def test_the_kpo_async_decorator_ships_the_function_to_a_python_pod(tmp_path) -> None:
    """``@task.kpo_async``: the pod spec runs the function with its arguments; the program the pod
    would run is run here by a real Python with the pod's env (the simulator has no Python)."""
    import base64
    import os
    import subprocess
    import sys

    from airflow.sdk import DAG, task

    from kpo_async.decorators import RUN_SCRIPT, SCRIPT_ENV

    with DAG("decorated_python", schedule=None) as dag:

        @task.kpo_async(
            image="python:3.12-slim", namespace="default", env_vars={"GREETING": "hi"}, do_xcom_push=True
        )
        def add(a: int, b: int) -> int:
            print(os.environ["GREETING"], a + b)
            return a + b

        add(2, b=3)

    op = dag.get_task("add")
    assert op.deferrable
    op.add_script()
    base = next(c for c in op.build_pod_request_obj().spec.containers if c.name == "base")
    assert base.command == ["python", "-c", RUN_SCRIPT] and base.image == "python:3.12-slim"
    env = {e.name: e.value for e in base.env}
    program = base64.b64decode(env[SCRIPT_ENV]).decode()
    assert "/airflow/xcom/return.json" in program and "@task" not in program
    output = tmp_path / "return.json"
    runnable = program.replace("/airflow/xcom/return.json", str(output))
    env[SCRIPT_ENV] = base64.b64encode(runnable.encode()).decode()
    ran = subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT],
        env={**env, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "hi 5"
    assert output.read_text() == "5"
    # A failing function: the traceback shows its source lines, as from a script file.
    env[SCRIPT_ENV] = base64.b64encode(runnable.replace("a + b)", "a / 0)", 1).encode()).decode()
    ran = subprocess.run([sys.executable, "-c", RUN_SCRIPT], env=env, capture_output=True, text=True)
    assert ran.returncode == 1 and "ZeroDivisionError" in ran.stderr
    assert 'print(os.environ["GREETING"], a / 0)' in ran.stderr, ran.stderr
