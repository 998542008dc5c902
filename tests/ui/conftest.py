"""Fixtures for the browser tests: `kpo-async demo --ui` as a user runs it, and a headless Chromium."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import psutil
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from kpo_async.testing.airflow_stack import AirflowApi, StackError, wait_until
from tests.ui.browser import missing_browser, start_browser

REPO = Path(__file__).resolve().parents[2]
KPO_ASYNC = str(Path(sys.executable).with_name("kpo-async"))
#: How long the long pod runs in this test: long enough to look at it while it is deferred.
SECONDS = 120


@dataclass
class Demo:
    """A running `kpo-async demo --ui` and what it printed."""

    proc: subprocess.Popen
    output_path: Path
    base_url: str = ""
    user: str = ""
    password: str = ""
    cluster_url: str = ""
    kubeconfig: Path = Path()
    live_url: str = ""
    fails_url: str = ""
    api: AirflowApi | None = None
    processes: list[psutil.Process] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    @staticmethod
    def run_id(task_url: str) -> str:
        return unquote(task_url.split("/runs/", 1)[1].split("/tasks/", 1)[0])


def _parse(demo: Demo) -> bool:
    text = demo.output
    if demo.proc.poll() is not None:
        raise StackError(f"kpo-async demo --ui exited with {demo.proc.returncode}:\n{text[-4000:]}")
    if "Press Ctrl-C" not in text:
        return False
    fields = {
        "base_url": r"^\s*UI:\s+(\S+)",
        "live_url": r"^\s*live:\s+(\S+)",
        "fails_url": r"^\s*fails:\s+(\S+)",
        "cluster_url": r"^\s*cluster:\s+(\S+)",
    }
    for name, pattern in fields.items():
        match = re.search(pattern, text, re.MULTILINE)
        assert match, f"the demo did not print {name}:\n{text}"
        setattr(demo, name, match.group(1))
    login = re.search(r"^\s*login:\s+(\S+) / (\S+)", text, re.MULTILINE)
    kubeconfig = re.search(r"kubectl --kubeconfig (\S+) get pods", text)
    assert login and kubeconfig, text
    demo.user, demo.password = login.groups()
    demo.kubeconfig = Path(kubeconfig.group(1))
    return True


@pytest.fixture(scope="module")
def screenshots() -> Iterator[Path]:
    """Where screenshots go: $KPO_ASYNC_SCREENSHOTS (make ui-screenshots: docs/img) or a temp dir."""
    chosen = os.environ.get("KPO_ASYNC_SCREENSHOTS")
    if chosen:
        path = Path(chosen)
        path = path if path.is_absolute() else REPO / path
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="kpo-async-ui-shots-"))
    yield path
    print(f"\nscreenshots kept in {path}")


@pytest.fixture(scope="module")
def demo(request: pytest.FixtureRequest) -> Iterator[Demo]:
    """`kpo-async demo --ui` with only the long-running example (its live run and its failing run)."""
    workdir = Path(tempfile.mkdtemp(prefix="kpo-async-ui-test-"))
    output_path = workdir / "demo.out"
    with open(output_path, "w") as output:
        proc = subprocess.Popen(
            [
                KPO_ASYNC,
                "demo",
                "--ui",
                "--keep",
                "--seconds",
                str(SECONDS),
                "--dag",
                "example_kpo_async_long_running",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    demo = Demo(proc, output_path)
    started = time.monotonic()
    try:
        wait_until(lambda: _parse(demo), timeout=420, what="kpo-async demo --ui to be up", first=1, most=2)
        print(f"\nkpo-async demo --ui up in {time.monotonic() - started:.0f}s at {demo.base_url}")
        demo.api = AirflowApi(demo.base_url, (demo.user, demo.password))
        yield demo
    finally:
        if demo.api is not None:
            demo.api.close()
        if proc.poll() is None:  # a test failed before the Ctrl-C test: stop it the same way
            leftovers = _children(proc)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                leftovers += _children(proc)
                proc.kill()
            for child in leftovers:
                with contextlib.suppress(psutil.Error):
                    child.kill()
        print(f"----- kpo-async demo --ui output -----\n{demo.output[-3000:]}")
        kept = re.search(r"^kept (\S+)$", demo.output, re.MULTILINE)
        if kept:
            if request.session.testsfailed:
                print(_diagnostics(Path(kept.group(1))))
            shutil.rmtree(kept.group(1), ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _diagnostics(home: Path, lines: int = 60) -> str:
    """The ends of the services' logs and of the task logs, for a failing run's report."""
    out = []
    for path in sorted([*home.glob("logs/services/*.log"), *home.glob("airflow/logs/dag_id=*/**/*.log")]):
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"----- {path.relative_to(home)} (last {len(text)} lines) -----\n" + "\n".join(text))
    return "\n".join(out)


def _children(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        return []


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    reason = missing_browser()
    if reason:
        pytest.fail(reason)
    profile = Path(tempfile.mkdtemp(prefix="kpo-async-chromium-"))
    driver = start_browser(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
