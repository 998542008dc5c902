"""Deprecated arguments warn where a DAG author sees it, as the official provider's do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_DAG = """
from airflow.sdk import DAG
from kpo_async import AsyncKubernetesPodOperator

with DAG("deprecated_arguments"):
    kept = AsyncKubernetesPodOperator(task_id="kept", image="alpine", is_delete_operator_pod=False)
print("on_finish_action:", kept.on_finish_action)
"""


def test_is_delete_operator_pod_warns_with_the_providers_deprecation_category() -> None:
    from airflow.exceptions import AirflowProviderDeprecationWarning

    from kpo_async import AsyncKubernetesPodOperator

    with pytest.warns(AirflowProviderDeprecationWarning, match="use on_finish_action") as caught:
        op = AsyncKubernetesPodOperator(task_id="t", image="alpine", is_delete_operator_pod=True)
    assert op.on_finish_action == "delete_pod"
    ours = [w for w in caught if "is_delete_operator_pod" in str(w.message)]  # imports may warn too
    assert ours[0].filename == __file__  # points at the DAG's line, not at kpo-async


def test_the_warning_shows_with_pythons_default_filters(tmp_path: Path) -> None:
    """Python hides a DeprecationWarning outside __main__ unless told otherwise: a DAG file is
    imported as a module (by the DAG processor, a worker, `airflow dags test`)."""
    (tmp_path / "deprecated_dag.py").write_text(_DAG)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp_path)])
    result = subprocess.run(
        [sys.executable, "-c", "import deprecated_dag"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "on_finish_action: keep_pod" in result.stdout
    # Airflow routes warnings to its log, where the DAG author's line is named: 3.3 as
    # "message ... category=... filename=...deprecated_dag.py lineno=6", 3.0 as "...deprecated_dag.py:6
    # AirflowProviderDeprecationWarning: message".
    output = result.stdout + result.stderr
    assert any(
        "is_delete_operator_pod is deprecated" in line
        and "AirflowProviderDeprecationWarning" in line
        and re.search(r"deprecated_dag\.py\b\D{0,12}6\b", line)
        for line in output.splitlines()
    ), output
