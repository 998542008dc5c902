"""kpo-async as an Airflow provider: what `get_provider_info()` declares is valid and what Airflow sees."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from kpo_async import __version__
from kpo_async.connection import CONNECTION_EXTRAS
from kpo_async.hook import KubernetesConnectionHook
from kpo_async.provider import CONNECTION_TYPE, get_provider_info

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def provider_info_schema() -> dict[str, Any] | None:
    try:
        text = resources.files("airflow").joinpath("provider_info.schema.json").read_text()
    except (FileNotFoundError, ModuleNotFoundError):
        return None
    return json.loads(text)


def test_provider_info_validates_against_airflows_schema() -> None:
    schema = provider_info_schema()
    if schema is None:
        pytest.skip("this Airflow does not ship provider_info.schema.json")
    import jsonschema

    jsonschema.validators.validator_for(schema)(schema).validate(get_provider_info())


def test_provider_info_names_what_exists() -> None:
    info = get_provider_info()
    assert info["package-name"] == "kpo-async"
    assert info["versions"][0] == __version__
    for section in ("operators", "triggers", "hooks"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    (connection,) = info["connection-types"]
    module, _, name = connection["hook-class-name"].rpartition(".")
    hook = getattr(importlib.import_module(module), name)
    assert hook is KubernetesConnectionHook
    assert connection["connection-type"] == hook.conn_type == CONNECTION_TYPE
    assert connection["hook-name"] == hook.hook_name
    # the same extras as the official `kubernetes` connection, as form fields, read by resolve_cluster
    official = [
        "in_cluster",
        "kube_config_path",
        "kube_config",
        "namespace",
        "cluster_context",
        "disable_verify_ssl",
        "xcom_sidecar_container_image",
        "xcom_sidecar_container_resources",
    ]
    assert list(connection["conn-fields"]) == official == list(CONNECTION_EXTRAS)
    assert connection["conn-fields"]["kube_config"]["schema"]["format"] == "password"
    assert set(connection["ui-field-behaviour"]["hidden-fields"]) == set(
        hook.get_ui_field_behaviour()["hidden_fields"]
    )
    for link in info["extra-links"]:
        module, _, name = link.rpartition(".")
        from airflow.sdk import BaseOperatorLink

        assert issubclass(getattr(importlib.import_module(module), name), BaseOperatorLink)


def test_the_integration_url_is_http() -> None:
    for integration in get_provider_info()["integrations"]:
        assert integration["external-doc-url"].startswith(("https://", "http://"))


@pytest.fixture(scope="module")
def airflow_cli(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`airflow providers list|hooks|links -o json`, run in parallel with a fresh AIRFLOW_HOME."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    commands = {name: [AIRFLOW, "providers", name, "-o", "json"] for name in ("list", "hooks", "links")}
    processes = {
        name: subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, command in commands.items()
    }
    results: dict[str, Any] = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, f"airflow providers {name} failed:\n{stderr[-4000:]}"
        results[name] = json_table(stdout)
    return results


def json_table(stdout: str) -> list[dict[str, Any]]:
    """The JSON rows in a CLI's output, past any log lines (Airflow 3.0 logs to stdout first)."""
    decoder = json.JSONDecoder()
    for start in (i for i, char in enumerate(stdout) if char == "["):
        try:
            rows, _ = decoder.raw_decode(stdout, start)
        except json.JSONDecodeError:
            continue
        if isinstance(rows, list) and all(isinstance(row, dict) for row in rows):
            return rows
    raise AssertionError(f"no JSON table in the output:\n{stdout[-2000:]}")


def test_airflow_providers_list_shows_kpo_async(airflow_cli: dict[str, Any]) -> None:
    rows = {row["package_name"]: row for row in airflow_cli["list"]}
    assert "kpo-async" in rows
    assert rows["kpo-async"]["version"] == __version__


def test_airflow_knows_the_connection_type(airflow_cli: dict[str, Any]) -> None:
    rows = {row["connection_type"]: row for row in airflow_cli["hooks"]}
    assert rows[CONNECTION_TYPE]["class"] == "kpo_async.hook.KubernetesConnectionHook"
    assert rows[CONNECTION_TYPE]["package_name"] == "kpo-async"


def test_airflow_knows_the_pod_extra_link(airflow_cli: dict[str, Any]) -> None:
    links = {row["extra_link_class_name"] for row in airflow_cli["links"]}
    assert "kpo_async.links.PodLink" in links
