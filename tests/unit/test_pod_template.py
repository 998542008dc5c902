from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from kpo_async.errors import InvalidArgumentError
from kpo_async.identity import TaskIdentity
from kpo_async.k8s_objects import to_api_dict
from kpo_async.pod_builder import PodArguments, build_pod
from kpo_async.pod_template import parse_pod_template, pod_template_from_dict, read_pod_template

YAML_TEMPLATE = """\
apiVersion: v1
kind: Pod
metadata:
  name: templated
  labels:
    team: data
spec:
  serviceAccountName: jobs
  containers:
    - name: base
      image: python:3.12-slim
      env:
        - name: PORT
          value: 8080
      volumeMounts:
        - name: scratch
          mountPath: /scratch
  volumes:
    - name: scratch
      emptyDir: {}
"""

EXPECTED = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "templated", "labels": {"team": "data"}},
    "spec": {
        "serviceAccountName": "jobs",
        "containers": [
            {
                "name": "base",
                "image": "python:3.12-slim",
                "env": [{"name": "PORT", "value": "8080"}],  # the YAML int, as the string the API wants
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }
        ],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    },
}


def test_parse_yaml() -> None:
    assert parse_pod_template(YAML_TEMPLATE, source="t.yaml") == EXPECTED


def test_parse_json_including_tabs() -> None:
    text = json.dumps(EXPECTED, indent="\t")
    assert parse_pod_template(text, source="t.json") == EXPECTED


def test_python_client_spelling_is_renamed() -> None:
    text = YAML_TEMPLATE.replace("serviceAccountName", "service_account_name").replace(
        "mountPath", "mount_path"
    )
    assert parse_pod_template(text, source="t.yaml") == EXPECTED


def test_read_pod_template(tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(YAML_TEMPLATE)
    assert read_pod_template(str(path)) == EXPECTED


def test_template_feeds_build_pod(tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(YAML_TEMPLATE)
    pod = build_pod(
        PodArguments(env_vars={"MODE": "x"}),
        identity=TaskIdentity("d", "t", "r"),
        template=read_pod_template(str(path)),
    )
    data = to_api_dict(pod)
    assert data["metadata"]["name"].startswith("templated-")
    assert data["spec"]["serviceAccountName"] == "jobs"
    assert data["spec"]["containers"][0]["image"] == "python:3.12-slim"
    assert data["spec"]["containers"][0]["env"] == [
        {"name": "PORT", "value": "8080"},  # YAML int coerced to the string the API wants
        {"name": "MODE", "value": "x"},
    ]


def test_pod_template_from_dict() -> None:
    assert pod_template_from_dict(EXPECTED) == EXPECTED
    with pytest.raises(InvalidArgumentError) as info:
        pod_template_from_dict({"kind": "Pod", "spec": {}})
    assert info.value.argument == "pod_template_dict"
    assert "pod_template_dict has no spec.containers" in info.value.problem


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("- a\n- b\n", "holds a list"),
        ("kind: Deployment\nspec: {}\n", "is a Deployment, not a Pod"),
        ("kind: Pod\nmetadata: {name: x}\n", "has no spec.containers"),
        ("spec:\n  containers:\n    - image: x\n", "spec.containers[0]: required field 'name' is missing"),
        ("spec:\n  containers: [{name: base}]\n---\nkind: Pod\n", "several YAML documents"),
        ("spec:\n  containers: [{name: base\n", "line 3"),
        ('{"spec": {"containers": [}}', "line 1, column 26"),
        ("spec:\n  containers: [{name: base, imagePullPolicyy: Always}]\n", "did you mean 'imagePullPolicy'"),
        ("spec:\n  containers: [{name: base, env: {A: b}}]\n", "spec.containers[0].env must be a list"),
        ("spec:\n  containers: [{name: base}]\n  tolerations: [{tolerationSeconds: soon}]\n", "an integer"),
    ],
)
def test_bad_templates_name_the_argument_and_source(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_pod_template(text, source="/dags/pod.yaml")
    assert info.value.argument == "pod_template_file"
    assert "/dags/pod.yaml" in info.value.problem
    assert problem in info.value.problem
    assert str(info.value).startswith("Invalid pod_template_file: ")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for path, problem in [(tmp_path / "missing.yaml", "does not exist"), (tmp_path, "is a directory")]:
        with pytest.raises(InvalidArgumentError) as info:
            read_pod_template(str(path))
        assert info.value.argument == "pod_template_file"
        assert str(path) in info.value.problem and problem in info.value.problem


def test_unreadable_and_binary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "pod.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidArgumentError, match="is not UTF-8 text"):
        read_pod_template(str(binary))

    def denied(*_: Any, **__: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(builtins, "open", denied)  # running as root would bypass chmod
    with pytest.raises(InvalidArgumentError, match="not readable by the worker's user"):
        read_pod_template("/secret/pod.yaml")
