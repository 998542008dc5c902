"""The ``[kpo_async]`` settings: read from airflow.cfg or the environment, declared to Airflow, documented."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from kpo_async.errors import KpoAsyncError
from kpo_async.settings import OPTIONS, setting

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
#: A value other than the default for every setting, as written in airflow.cfg.
IN_AIRFLOW_CFG = {
    "api_connections": "9",
    "max_log_streams": "0",
    "tls_read_buffer_kib": "16",
    "log_records_per_second": "250.5",
    "pod_url_template": "https://dash.example/#/pod/{namespace}/{pod}",
    "end_from_trigger": "True",
}
#: What each process reads the settings through (the objects built from them).
_READ_BY_KPO_ASYNC = """
import json
from kpo_async.clients import ClientLimits
from kpo_async.log_records import shared_budget
from kpo_async.settings import setting
limits = ClientLimits.configured()
print(json.dumps({
    "api_connections": limits.api_connections,
    "max_log_streams": limits.log_streams,
    "tls_read_buffer_kib": limits.tls_read_buffer_kib,
    "log_records_per_second": shared_budget().per_second,
    "pod_url_template": setting("pod_url_template"),
    # The operator's default (tests/core/test_end_from_trigger.py: what its trigger gets from it).
    "end_from_trigger": setting("end_from_trigger"),
}))
"""


@pytest.fixture(scope="module")
def from_airflow_cfg(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fresh Airflow home whose airflow.cfg sets every option: what kpo-async reads there, and
    what `airflow config list` shows (run in parallel)."""
    home = tmp_path_factory.mktemp("airflow-cfg-home")
    lines = [f"{name} = {value}" for name, value in IN_AIRFLOW_CFG.items()]
    (home / "airflow.cfg").write_text("[kpo_async]\n" + "\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), PYTHONPATH=str(ROOT))
    config_list = [AIRFLOW, "config", "list", "--section", "kpo_async", "-d", "-e"]
    if _AIRFLOW_VERSION >= (3, 1):  # values are hidden unless asked for since 3.1; 3.0 shows them
        config_list.append("--show-values")
    processes = {
        "read": subprocess.Popen([sys.executable, "-c", _READ_BY_KPO_ASYNC], env=env, **_PIPES),
        "listed": subprocess.Popen(config_list, env=env, **_PIPES),
    }
    results: dict[str, Any] = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, f"{name} failed:\n{stderr[-4000:]}"
        results[name] = stdout
    results["read"] = json.loads(results["read"].strip().splitlines()[-1])
    return results


_AIRFLOW_VERSION = tuple(int(part) for part in version("apache-airflow").split(".")[:2])
_TYPES: dict[str, Any] = {
    "integer": int,
    "float": float,
    "string": str,
    "boolean": lambda text: text == "True",
}
_PIPES: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}


def test_every_setting_is_tested_here() -> None:
    assert set(IN_AIRFLOW_CFG) == set(OPTIONS)


@pytest.mark.parametrize("name", sorted(IN_AIRFLOW_CFG))
def test_a_setting_in_airflow_cfg_is_used(name: str, from_airflow_cfg: dict[str, Any]) -> None:
    written = IN_AIRFLOW_CFG[name]
    expected = _TYPES[OPTIONS[name]["type"]](written)
    assert expected != _default(name)  # else this would not show that airflow.cfg was read
    assert from_airflow_cfg["read"][name] == expected


@pytest.mark.parametrize("name", sorted(IN_AIRFLOW_CFG))
def test_airflow_config_list_shows_the_setting(name: str, from_airflow_cfg: dict[str, Any]) -> None:
    listed = from_airflow_cfg["listed"]
    assert f"\n{name} = {IN_AIRFLOW_CFG[name]}\n" in listed, listed
    first_line = OPTIONS[name]["description"].splitlines()[0]
    assert first_line in listed, listed  # the description comes with it
    assert f"# Example: {name} = {OPTIONS[name]['example']}" in listed, listed


def _default(name: str) -> Any:
    return _TYPES[OPTIONS[name]["type"]](OPTIONS[name]["default"])


def test_defaults_without_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OPTIONS:
        monkeypatch.delenv(f"AIRFLOW__KPO_ASYNC__{name.upper()}", raising=False)
    assert {name: setting(name) for name in OPTIONS} == {
        "api_connections": 64,
        "max_log_streams": 1000,
        "tls_read_buffer_kib": 8,
        "log_records_per_second": 100.0,
        "pod_url_template": "",
        "end_from_trigger": False,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("api_connections", "0"),
        ("api_connections", "many"),
        ("max_log_streams", "-1"),
        ("max_log_streams", "2.5"),
        ("tls_read_buffer_kib", ""),
        ("log_records_per_second", "0"),
        ("log_records_per_second", "nan"),
        ("end_from_trigger", "yes please"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting_and_the_fix(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"AIRFLOW__KPO_ASYNC__{name.upper()}", value)
    with pytest.raises(KpoAsyncError) as raised:
        setting(name)
    message = str(raised.value)
    assert f"[kpo_async] {name} = {value!r}" in message
    assert "Fix: set it to" in message
    assert f"AIRFLOW__KPO_ASYNC__{name.upper()}" in message


def test_a_setting_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.configuration import conf

    monkeypatch.delenv("AIRFLOW__KPO_ASYNC__TLS_READ_BUFFER_KIB", raising=False)
    first = setting("tls_read_buffer_kib")
    added_section = not conf.has_section("kpo_async")  # Airflow 3.0 sets no option of a missing section
    if added_section:
        conf.add_section("kpo_async")
    conf.set("kpo_async", "tls_read_buffer_kib", str(first + 1))
    try:
        assert setting("tls_read_buffer_kib") == first  # no new lookup in Airflow's configuration
    finally:
        conf.remove_option("kpo_async", "tls_read_buffer_kib")
        if added_section:
            conf.remove_section("kpo_async")
    monkeypatch.setenv("AIRFLOW__KPO_ASYNC__TLS_READ_BUFFER_KIB", "4")
    assert setting("tls_read_buffer_kib") == 4  # a changed environment variable is read again


def test_the_settings_page_documents_every_setting_its_default_and_reader() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    rows = dict(re.findall(r"^\| `\[kpo_async\] (\w+)` \| (.*)$", text, re.MULTILINE))
    assert set(rows) == set(OPTIONS)
    for name, option in OPTIONS.items():
        default, read_by = (cell.strip() for cell in rows[name].split("|")[:2])
        assert default == (f"`{option['default']}`" if option["default"] else "empty"), name
        assert re.match(r"(worker|triggerer|API server)\b", read_by), (name, read_by)
    assert "settings.md" in (ROOT / "mkdocs.yml").read_text()
