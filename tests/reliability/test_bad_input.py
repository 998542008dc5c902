"""Bad input: every error names its cause and the fix, and no pod is left behind.

Input that can be checked without the cluster fails in `execute` before any request is made. Input
that only the cluster or another host can judge (a namespace, a kubeconfig on the triggerer host, the
XCom file a pod writes) fails with the same clarity, and the pod is cleaned up. A pod that finished,
was evicted or deleted from outside never turns into a silent SUCCESS without its XCom.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kpo_async.airflow_compat import AirflowFailException
from kpo_async.errors import InvalidArgumentError, PodFailedError
from tests.reliability.conftest import (
    FakeTI,
    behavior,
    context_for,
    delete_now,
    live_pods,
    make_operator,
    read_pod,
    run_deferred,
    run_task,
    run_trigger,
    stored_kwargs,
    submit,
    trigger_from,
    wait_until,
)


def fails_before_touching_the_cluster(sim, op) -> InvalidArgumentError:
    before = sim.stats.snapshot()["requests"]
    with pytest.raises(InvalidArgumentError) as info:
        op.execute(context_for(FakeTI(op.task_id)))
    assert sim.stats.snapshot()["requests"].get("create pods", 0) == before.get("create pods", 0)
    assert live_pods(sim, op.task_id) == []
    return info.value


def assert_cause_and_fix(error: BaseException, *cause: str) -> None:
    message = str(error)
    for part in cause:
        assert part in message, f"{part!r} not in: {message}"
    _, _, fix = message.partition("Fix:")
    assert fix.strip(), f"no fix in: {message}"


# -- arguments the worker can check -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "argument", "cause"),
    [
        ({"name": "Not_A_Valid_Name!"}, "name", ["'Not_A_Valid_Name!'", "not a usable pod name"]),
        ({"labels": {"team": 3}}, "labels", ["'team'", "str(3)"]),
        ({"container_resources": {"limit_cpuu": "1"}}, "container_resources", ["unknown key 'limit_cpuu'"]),
    ],
    ids=["pod-name", "label-type", "resources-key"],
)
def test_invalid_arguments_fail_before_any_request(sim, kwargs: dict[str, Any], argument: str, cause) -> None:
    task_id = f"bad-{argument.replace('_', '-')}"
    op = make_operator(sim, **{"name": task_id, **kwargs, "task_id": task_id})
    error = fails_before_touching_the_cluster(sim, op)
    assert error.argument == argument
    assert_cause_and_fix(error, f"Invalid {argument}", *cause)


@pytest.mark.parametrize(
    ("kwargs", "cause"),
    [
        ({"labels": {"bad key!": "v"}}, ["metadata.labels", "bad key!"]),
        ({"labels": {"team": "data eng"}}, ["metadata.labels", "data eng"]),
        ({"labels": {"team": "x" * 64}}, ["metadata.labels", "must be no more than 63 characters"]),
        ({"labels": {"Bad_Prefix/app": "v"}}, ["metadata.labels", "Bad_Prefix/app"]),
        ({"annotations": {"-bad": "v"}}, ["metadata.annotations", "-bad"]),
        ({"container_resources": {"limits": {"cpu": "lots"}}}, ["resources.limits[cpu]", "lots"]),
        ({"container_resources": {"limits": {"cpu": "1 core"}}}, ["resources.limits[cpu]", "1 core"]),
        ({"resources": {"limit_cpu": "-1"}}, ["resources.limits[cpu]", "greater than or equal to 0"]),
        ({"resources": {"limit_cpu": True}}, ["resources.limits[cpu]", "true"]),
        ({"env_vars": {"A=B": "1"}}, ["env[0].name", "A=B"]),
        ({"env_vars": {"": "1"}}, ["env[0].name", "Required value"]),
        ({"base_container_name": "Base"}, ["spec.containers[0].name", "Base"]),
        ({"image_pull_policy": "Sometimes"}, ["imagePullPolicy", "Sometimes", "IfNotPresent"]),
        ({"namespace": "Bad_Namespace"}, ["Bad_Namespace", "not found"]),
        ({"namespace": "x" * 64}, ["x" * 64, "not found"]),
        ({"node_selector": {"disk": "s s d"}}, ["spec.nodeSelector", "s s d"]),
        ({"ports": [{"containerPort": 70000}]}, ["ports[0].containerPort"]),
        ({"service_account_name": "Bad_SA"}, ["spec.serviceAccountName"]),
        ({"hostname": "Host_1"}, ["spec.hostname", "Host_1"]),
        ({"termination_message_policy": "Stdout"}, ["terminationMessagePolicy"]),
        ({"dnspolicy": "Cluster"}, ["spec.dnsPolicy", "ClusterFirst"]),
        ({"container_resources": {"limits": {"memroy": "1Gi"}}}, ["memroy"]),
    ],
    ids=[
        "label-key",
        "label-value",
        "label-too-long",
        "label-prefix",
        "annotation-key",
        "quantity",
        "quantity-with-space",
        "quantity-negative",
        "quantity-bool",
        "env-name",
        "env-name-empty",
        "container-name",
        "pull-policy",
        "namespace-syntax",
        "namespace-too-long",
        "node-selector",
        "container-port",
        "service-account",
        "hostname",
        "termination-message-policy",
        "dns-policy",
        "resource-name",
    ],
)
def test_values_the_api_server_refuses_fail_at_submit_and_leave_no_pod(
    sim, cleanup_pods, request: pytest.FixtureRequest, kwargs: dict[str, Any], cause: list[str]
) -> None:
    """Label, quantity, name and env syntax are the API server's to judge: its 422 names the field."""
    name = f"refused-{request.node.callspec.id}"
    cleanup_pods.append(name)  # should the cluster accept the pod after all
    op = make_operator(sim, name, **kwargs)
    with pytest.raises(InvalidArgumentError) as info:
        op.execute(context_for(FakeTI(op.task_id)))
    assert_cause_and_fix(info.value, *cause)
    # No retry can help: Airflow fails the task without using its retries, and the message says so.
    assert isinstance(info.value, AirflowFailException)
    assert info.value.argument != "pod spec" or "no retry was made" in str(info.value)
    assert live_pods(sim, name) == []
    assert live_pods(sim, name, namespace=kwargs.get("namespace", "default")) == []


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda d: str(d / "missing.yaml"), ["missing.yaml", "does not exist"]),
        (lambda d: str(d), ["is a directory"]),
        (
            lambda d: write(d / "bad.yaml", "spec:\n  containers:\n    - name: base\n   image: x\n"),
            ["bad.yaml", "not valid YAML or JSON", "line "],
        ),
        (
            lambda d: write(d / "deploy.yaml", "apiVersion: apps/v1\nkind: Deployment\nspec: {}\n"),
            ["is a Deployment, not a Pod"],
        ),
        (lambda d: write(d / "list.yaml", "- a\n- b\n"), ["holds a list, not a Pod"]),
        (lambda d: write(d / "empty.yaml", ""), ["is empty"]),
        (
            lambda d: write(d / "noname.yaml", "kind: Pod\nspec:\n  containers:\n    - image: x\n"),
            ["spec.containers[0]: required field 'name' is missing"],
        ),
    ],
    ids=["missing", "directory", "bad-yaml", "not-a-pod", "a-list", "empty", "unnamed-container"],
)
def test_unusable_pod_template_files(sim, tmp_path: Path, make, cause: list[str]) -> None:
    op = make_operator(sim, "bad-template", pod_template_file=make(tmp_path))
    error = fails_before_touching_the_cluster(sim, op)
    assert error.argument == "pod_template_file"
    assert_cause_and_fix(error, "Invalid pod_template_file", *cause)


def test_a_kubeconfig_that_does_not_exist_on_the_worker(sim) -> None:
    op = make_operator(sim, "no-kubeconfig", config_file="/nonexistent/kubeconfig")
    error = fails_before_touching_the_cluster(sim, op)
    assert_cause_and_fix(error, "'/nonexistent/kubeconfig' does not exist on host")


def test_an_unknown_context(sim) -> None:
    op = make_operator(sim, "no-context", cluster_context="prod-eu")
    error = fails_before_touching_the_cluster(sim, op)
    assert error.argument == "cluster_context"
    assert_cause_and_fix(error, "'prod-eu' is not in kubeconfig", "kpo-async-sim")  # names the valid ones


def test_an_unknown_connection_id(sim) -> None:
    op = make_operator(sim, "no-conn", kubernetes_conn_id="k8s_prod", config_file=None)
    error = fails_before_touching_the_cluster(sim, op)
    assert error.argument == "kubernetes_conn_id"
    assert_cause_and_fix(error, "connection 'k8s_prod' was not found")


def test_a_namespace_that_does_not_exist(sim) -> None:
    op = make_operator(sim, "no-namespace", namespace="does-not-exist")
    with pytest.raises(InvalidArgumentError) as info:
        op.execute(context_for(FakeTI(op.task_id)))
    assert info.value.argument == "namespace"
    assert_cause_and_fix(info.value, "does-not-exist", "not found")
    assert live_pods(sim, "no-namespace") == []


# -- the triggerer host cannot read the kubeconfig ----------------------------------------------------


def test_a_kubeconfig_missing_on_the_triggerer_ends_in_an_error_and_the_worker_cleans_up(sim) -> None:
    """The official provider leaves the pod running here (apache/airflow #29488, #34644)."""
    name = "triggerer-no-config"
    op = make_operator(sim, name, annotations=behavior(duration_seconds=60))
    ti = FakeTI(name)
    deferred = submit(op, ti)
    classpath, kwargs = stored_kwargs(deferred)
    on_triggerer = {**kwargs, "cluster": {**kwargs["cluster"], "config_file": "/triggerer/has/no/kubeconfig"}}
    event = run_trigger(trigger_from(classpath, on_triggerer))
    assert event["status"] == "error"
    assert "failed on the triggerer" in event["message"]
    assert_cause_and_fix(event["message"], "'/triggerer/has/no/kubeconfig' does not exist on host")
    with pytest.raises(PodFailedError) as info:
        op.execute_complete(context_for(ti), event)  # the worker's own, valid, kubeconfig
    assert "does not exist" in str(info.value)
    assert live_pods(sim, name) == []  # deleted by the worker


def test_credentials_refused_on_the_triggerer_are_reported_promptly(sim, tmp_path: Path) -> None:
    import yaml

    name = "triggerer-refused"
    op = make_operator(sim, name, annotations=behavior(duration_seconds=60))
    ti = FakeTI(name)
    deferred = submit(op, ti)
    classpath, kwargs = stored_kwargs(deferred)
    config = yaml.safe_load(Path(sim.kubeconfig_path).read_text())
    config["users"][0]["user"]["token"] = "revoked"
    revoked = write(tmp_path / "revoked", yaml.safe_dump(config))
    try:
        event = run_trigger(
            trigger_from(classpath, {**kwargs, "cluster": {"config_file": revoked}}), timeout=5
        )
        assert event["status"] == "error" and "401" in event["message"]
    finally:
        with pytest.raises(PodFailedError):
            op.execute_complete(
                context_for(ti),
                {"status": "error", "namespace": "default", "pod_name": deferred.trigger.pod_name},
            )
        assert live_pods(sim, name) == []


# -- the pod's XCom file ------------------------------------------------------------------------------


def test_an_unusable_xcom_file(sim) -> None:
    name = "xcom-not-json"
    annotations = behavior(duration_seconds=0.2, xcom_raw="{'rows': 3}")
    op = make_operator(sim, name, do_xcom_push=True, annotations=annotations)
    with pytest.raises(PodFailedError) as info:
        run_task(op)
    assert_cause_and_fix(info.value, "is not valid JSON", "{'rows': 3}")
    assert live_pods(sim, name) == []


@pytest.mark.parametrize("spec", [{}, {"xcom_raw": ""}], ids=["missing", "empty"])
def test_a_missing_or_empty_xcom_file_is_none(
    sim, request: pytest.FixtureRequest, spec: dict[str, Any]
) -> None:
    """The official operator's outcome: the task succeeds with None (here with a warning)."""
    name = f"xcom-{request.node.callspec.id}"
    op = make_operator(sim, name, do_xcom_push=True, annotations=behavior(duration_seconds=0.2, **spec))
    assert run_task(op)[1] is None
    assert live_pods(sim, name) == []


# -- finished, then evicted or deleted from outside ---------------------------------------------------


@pytest.mark.parametrize("what", ["deleted", "evicted"])
def test_the_xcom_collected_before_the_pod_went_away_is_still_delivered(sim, what: str) -> None:
    """The trigger fired with the XCom; the pod then vanished before the task resumed on a worker."""
    name = f"gone-after-{what}"
    op = make_operator(
        sim, name, do_xcom_push=True, annotations=behavior(duration_seconds=0.3, xcom={"k": 1})
    )
    ti = FakeTI(name)
    deferred = submit(op, ti)
    event = run_deferred(deferred)
    assert event["status"] == "success" and event["xcom"] == {"k": 1}  # the event carries the value
    pod = deferred.trigger.pod_name
    if what == "deleted":
        delete_now(sim, pod)
        wait_until(lambda: read_pod(sim, pod) is None, what="the pod to go")
    else:
        sim.evict("default", pod)
    assert op.execute_complete(context_for(ti), event) == {"k": 1}
    assert live_pods(sim, name) == []


def _base_terminated(sim, pod: str) -> bool:
    state = read_pod(sim, pod)
    statuses = ((state or {}).get("status") or {}).get("containerStatuses") or []
    return any(s["name"] == "base" and (s.get("state") or {}).get("terminated") for s in statuses)


def test_a_pod_deleted_after_its_container_finished_is_never_a_success_without_xcom(sim) -> None:
    name = "deleted-before-xcom"
    op = make_operator(sim, name, do_xcom_push=True, annotations=behavior(duration_seconds=0.2, xcom=[1]))
    ti = FakeTI(name)
    deferred = submit(op, ti)
    pod = deferred.trigger.pod_name
    wait_until(lambda: _base_terminated(sim, pod), what="the base container to finish")
    delete_now(sim, pod)  # before the (slow) triggerer read the XCom
    wait_until(lambda: read_pod(sim, pod) is None, what="the pod to go")
    event = run_deferred(deferred)
    assert event["status"] != "success" and event["xcom"] is None
    assert "deleted" in event["message"]
    with pytest.raises(PodFailedError):
        op.execute_complete(context_for(ti), event)
    assert live_pods(sim, name) == []


def test_a_pod_evicted_after_its_container_finished_is_never_a_success_without_xcom(sim) -> None:
    name = "evicted-before-xcom"
    op = make_operator(sim, name, do_xcom_push=True, annotations=behavior(duration_seconds=0.2, xcom=[1]))
    ti = FakeTI(name)
    deferred = submit(op, ti)
    pod = deferred.trigger.pod_name
    wait_until(lambda: _base_terminated(sim, pod), what="the base container to finish")
    sim.evict("default", pod, "The node was low on resource: memory.")  # kills the XCom sidecar
    time.sleep(0.3)
    event = run_deferred(deferred)
    assert event["status"] != "success" and event["xcom"] is None
    with pytest.raises(PodFailedError) as info:
        op.execute_complete(context_for(ti), event)
    assert "XCom" in str(info.value)
    assert live_pods(sim, name) == []


def test_an_eviction_that_lost_the_xcom_says_the_pod_was_evicted(sim) -> None:
    name = "evicted-says-so"
    op = make_operator(sim, name, do_xcom_push=True, annotations=behavior(duration_seconds=0.2, xcom=[1]))
    ti = FakeTI(name)
    deferred = submit(op, ti)
    pod = deferred.trigger.pod_name
    wait_until(lambda: _base_terminated(sim, pod), what="the base container to finish")
    sim.evict("default", pod, "The node was low on resource: memory.")
    time.sleep(0.3)
    event = run_deferred(deferred)
    try:
        assert "Evicted" in event["message"] and "low on resource" in event["message"], event["message"]
    finally:
        with pytest.raises(PodFailedError):
            op.execute_complete(context_for(ti), event)
