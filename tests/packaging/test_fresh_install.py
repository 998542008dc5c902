"""The built wheel, installed in a fresh virtualenv, works on its own (no checkout on sys.path).

Builds this repository's wheel, creates an empty venv, installs the wheel with its dependencies
resolved from the package index, then runs what a user runs: ``kpo-async --help``, ``airflow
providers list``, ``kpo-async demo`` (the guide's three examples), and ``airflow dags test`` of
a DAG written as the official operator's guide writes them (``kubernetes.client.models``). Slow
(a minute or two with a warm package cache, several without one), so opt-in:
``pytest -m packaging tests/packaging``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kpo_async.testing.harness import SimProcess

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("hello_name.py", "xcom_etl.py", "remote_cluster.py", "long_running.py")
#: Variables that would let the fresh venv see the checkout or this test session's Airflow.
_SCRUBBED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "KUBECONFIG", "UV_PROJECT_ENVIRONMENT")


def _works(command: list[str]) -> bool:
    try:
        return (
            subprocess.run([*command, "--version"], capture_output=True, check=False, timeout=60).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def uv() -> list[str] | None:
    """uv if there is one: on PATH, pyenv's shim, or as a module of this interpreter."""
    for candidate in (shutil.which("uv"), "/root/.pyenv/shims/uv"):
        if candidate and Path(candidate).exists() and _works([candidate]):
            return [candidate]
    if _works([sys.executable, "-m", "uv"]):
        return [sys.executable, "-m", "uv"]
    return None


def run(command: list[str], *, env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited with {result.returncode}\n"
        f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )
    return result


def clean_env(home: Path, venv: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(home / "airflow")
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def build_wheel(out: Path, env: dict[str, str], work: Path) -> Path:
    command = uv()
    if command is not None:
        run([*command, "build", "--wheel", "--out-dir", str(out), str(ROOT)], env=env, cwd=work, timeout=600)
    else:
        run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(ROOT)],
            env=env,
            cwd=work,
            timeout=600,
        )
    wheels = sorted(out.glob("kpo_async-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fresh-install")


@pytest.fixture(scope="module")
def wheel(work: Path) -> Path:
    return build_wheel(work / "dist", clean_env(work), work)


@pytest.fixture(scope="module")
def venv(work: Path, wheel: Path) -> Path:
    venv = work / "venv"
    env = clean_env(work)
    run([sys.executable, "-m", "venv", str(venv)], env=env, cwd=work, timeout=300)
    python = venv / "bin" / "python"
    command = uv()
    if command is not None:
        run(
            [*command, "pip", "install", "--python", str(python), str(wheel)], env=env, cwd=work, timeout=1800
        )
    else:
        run([str(python), "-m", "pip", "install", str(wheel)], env=env, cwd=work, timeout=1800)
    return venv


def test_the_wheel_carries_the_example_dags_and_the_trigger(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for example in EXAMPLES:
        assert f"kpo_async/example_dags/{example}" in names
    assert "triggers/pod.py" in names
    assert "kpo_async/provider.yaml" in names  # the provider info and the settings' declarations
    assert "kpo_async/testing/sim/__main__.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "kpo-async = kpo_async.cli:main" in text
    assert "provider_info = kpo_async.provider:get_provider_info" in text


def test_the_package_is_imported_from_the_venv_not_the_checkout(work: Path, venv: Path) -> None:
    code = (
        "import kpo_async, triggers.pod, kpo_async.testing.demo as d; "
        "print(kpo_async.__file__); print(d.example_dags_folder())"
    )
    out = run([str(venv / "bin" / "python"), "-c", code], env=clean_env(work, venv), cwd=work, timeout=120)
    module, examples = out.stdout.split()
    assert Path(module).is_relative_to(venv), module
    assert Path(examples).is_relative_to(venv), examples
    assert sorted(p.name for p in Path(examples).glob("*.py")) == sorted(EXAMPLES)


def test_kpo_async_help(work: Path, venv: Path) -> None:
    out = run([str(venv / "bin" / "kpo-async"), "--help"], env=clean_env(work, venv), cwd=work, timeout=120)
    for command in ("sim", "demo", "bench", "doctor"):
        assert command in out.stdout


def test_airflow_lists_the_provider(work: Path, venv: Path) -> None:
    env = clean_env(work, venv)
    out = run([str(venv / "bin" / "airflow"), "providers", "list"], env=env, cwd=work, timeout=300)
    assert "kpo-async" in out.stdout
    hooks = run([str(venv / "bin" / "airflow"), "providers", "hooks"], env=env, cwd=work, timeout=300)
    assert "kpo_async_kubernetes" in hooks.stdout
    settings = run(
        [str(venv / "bin" / "airflow"), "config", "list", "--section", "kpo_async", "--show-values"],
        env=env,
        cwd=work,
        timeout=300,
    )
    assert "max_log_streams = 1000" in settings.stdout, settings.stdout


def test_the_demo_runs_the_guides_examples(work: Path, venv: Path) -> None:
    """The guide's three examples (hello-name, the XCom pipeline, the remote cluster), as the wheel
    ships them, run from the fresh venv against the embedded cluster."""
    out = run([str(venv / "bin" / "kpo-async"), "demo"], env=clean_env(work, venv), cwd=work, timeout=900)
    assert "Hello, your_name" in out.stdout
    for dag_id in ("hello_name", "xcom_etl", "remote_cluster"):
        assert f"example_kpo_async_{dag_id}: success" in out.stdout, out.stdout[-4000:]
    assert "all examples succeeded" in out.stdout
    assert "Unclosed" not in out.stdout + out.stderr


#: The guide's XCom pipeline written as the guide writes it (Airflow 2 style imports, which Airflow 3
#: still serves, and `kubernetes.client.models`); only the operator's import is switched.
GUIDE_DAG = r"""
import random
from datetime import datetime

from airflow import DAG
from airflow.decorators import task
from kubernetes.client import models as k8s

from kpo_async import AsyncKubernetesPodOperator as KubernetesPodOperator

with DAG(dag_id="guide_models", start_date=datetime(2026, 1, 1), schedule=None, catchup=False) as dag:

    @task
    def extract_data():
        return random.randint(0, 100)

    transform = KubernetesPodOperator(
        task_id="transform",
        name="transform",
        image="python:3.12-slim",
        cmds=["sh", "-c"],
        arguments=[
            'echo "greeting=$GREETING"; mkdir -p /airflow/xcom; '
            'echo "{\\"value\\": $(( DATA_POINT * 23 ))}" > /airflow/xcom/return.json'
        ],
        env_vars=[
            k8s.V1EnvVar(name="GREETING", value="from a V1EnvVar"),
            k8s.V1EnvVar(name="DATA_POINT", value="{{ ti.xcom_pull(task_ids='extract_data') }}"),
        ],
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "100m", "memory": "64Mi"}, limits={"memory": "128Mi"}
        ),
        volumes=[k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource())],
        volume_mounts=[k8s.V1VolumeMount(name="scratch", mount_path="/scratch")],
        get_logs=True,
        log_events_on_failure=True,
        do_xcom_push=True,
    )

    @task
    def load_data(**context):
        value = context["ti"].xcom_pull(task_ids="transform")["value"]
        print(f"loaded transformed value {value}")

    extract_data() >> transform >> load_data()
"""


def test_a_guide_dag_using_kubernetes_models_runs(work: Path, venv: Path) -> None:
    """`kubernetes` (the sync client) comes with kpo-async: the guide's `k8s.V1...` objects import
    and reach the pod, and the run ends without aiohttp's "Unclosed" noise."""
    home = work / "guide"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "guide_models.py").write_text(GUIDE_DAG)
    sim = SimProcess(str(home))
    try:
        env = clean_env(home, venv)
        env.update(
            AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW_CONN_KUBERNETES_DEFAULT=json.dumps(
                {"conn_type": "kubernetes", "extra": {"kube_config_path": sim.kubeconfig_path}}
            ),
        )
        airflow = str(venv / "bin" / "airflow")
        run([airflow, "db", "migrate"], env=env, cwd=home, timeout=600)
        result = run([airflow, "dags", "test", "guide_models"], env=env, cwd=home, timeout=600)
    finally:
        sim.stop()
    output = result.stdout + result.stderr
    assert "greeting=from a V1EnvVar" in output, output[-6000:]
    assert re.search(r"loaded transformed value \d+", output), output[-6000:]
    assert re.search(r"DagRun Finished: dag_id=guide_models.*state=success", output), output[-6000:]
    assert "Unclosed" not in output, output[-6000:]
