"""The built wheel, installed in a fresh virtualenv, works on its own (no checkout on sys.path).

Builds this repository's wheel, creates an empty venv, installs the wheel with its dependencies
resolved from the package index, then runs what a user runs: ``kpo-async --help``, ``airflow
providers list`` and ``kpo-async demo --dag example_kpo_async_hello_name``. Slow (about a minute
with a warm package cache, several without one), so opt-in: ``pytest -m packaging tests/packaging``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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


def test_the_demo_runs_hello_name(work: Path, venv: Path) -> None:
    out = run(
        [str(venv / "bin" / "kpo-async"), "demo", "--dag", "example_kpo_async_hello_name"],
        env=clean_env(work, venv),
        cwd=work,
        timeout=600,
    )
    assert "Hello, your_name" in out.stdout
    assert "example_kpo_async_hello_name: success" in out.stdout
    assert "all examples succeeded" in out.stdout
