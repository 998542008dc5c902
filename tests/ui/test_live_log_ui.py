"""What a person sees in the Airflow UI, proven in a real browser (headless Chromium).

`kpo-async demo --ui` runs the real api-server (with the UI), scheduler, dag-processor and
triggerer against the embedded cluster, and triggers two runs of ``example_kpo_async_long_running``:
one whose pod prints a numbered line every second for `SECONDS` seconds, one whose pod fails
(exit code 3) after 10 lines. The browser logs in through the login form and looks at them as a
user would. The tests run in order against one demo; the last one stops it with Ctrl-C.
"""

from __future__ import annotations

import base64
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from kpo_async.testing.airflow_stack import POD_PATH, wait_until
from tests.ui.browser import (
    log_text,
    login,
    pod_line_numbers,
    screenshot,
    scroll_into_view,
    task_state,
    wait_for,
)
from tests.ui.conftest import SECONDS, Demo

pytestmark = pytest.mark.ui

DAG_ID, TASK_ID = "example_kpo_async_long_running", "count_lines"
LIVE_SHOT, FAILED_SHOT = "ui-live-log.png", "ui-failed-pod.png"


def _still_deferred(demo: Demo, run_id: str, what: str) -> None:
    state = demo.api.task_instance(DAG_ID, run_id, TASK_ID)["state"]
    assert state == "deferred", f"the task was {state!r}, not deferred, when {what}: this machine is too slow"


def _get_pod(demo: Demo, url: str) -> dict:
    """GET a URL of the embedded cluster's API with the demo's kubeconfig (its CA and token)."""
    config = yaml.safe_load(demo.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, verify=context, timeout=10)
    assert response.status_code == 200, f"GET {url}: {response.status_code} {response.text[:300]}"
    return response.json()


def test_live_log_of_a_deferred_task(demo: Demo, browser: WebDriver, screenshots: Path) -> None:
    """While the task is deferred, its log page shows the pod's lines and new ones arrive without a
    reload; the task's Kubernetes Pod extra link opens that very pod."""
    # Logged in first: the pod's clock runs from its deferral on.
    login(browser, demo.base_url, demo.user, demo.password)
    run_id = demo.run_id(demo.live_url)
    ti = demo.api.wait_task(
        DAG_ID, run_id, TASK_ID, states=("deferred", "success", "failed"), timeout=300, first=0.5, most=1
    )
    assert ti["state"] == "deferred", ti
    wait_until(
        lambda: pod_line_numbers("\n".join(demo.api.log_events(DAG_ID, run_id, TASK_ID))),
        timeout=120,
        what="the pod's first lines in the task log (REST)",
        first=1,
        most=2,
    )
    _still_deferred(demo, run_id, "its first lines were in the log")
    browser.get(demo.live_url)
    # A marker that a reload (a new page) would wipe: the lines below must arrive without one.
    browser.execute_script("window.kpoNoReload = true")
    first = wait_for(
        browser,
        lambda d: pod_line_numbers(log_text(d)),
        timeout=120,
        what="the pod's lines on the task's log page",
    )
    wait_for(browser, lambda d: task_state(d, TASK_ID) == "Deferred", timeout=30, what="the Deferred badge")
    newest = max(first)
    later = wait_for(
        browser,
        lambda d: (numbers := pod_line_numbers(log_text(d))) and max(numbers) >= newest + 3 and numbers,
        timeout=60,
        what=f"lines after line {newest} to appear on the page by themselves",
    )
    assert browser.execute_script("return window.kpoNoReload === true"), "the page was reloaded"
    # The lines are the pod's own, in order, as it printed them.
    assert later == sorted(later) and len(set(later)) == len(later), later
    assert task_state(browser, TASK_ID) == "Deferred"
    shot = screenshot(browser, screenshots / LIVE_SHOT)
    _still_deferred(demo, run_id, "the live log was on screen")
    print(f"\nlive: lines up to {newest} at first, then up to {max(later)} without a reload; {shot}")

    # The Kubernetes Pod extra link (Details tab), while the task is still deferred.
    pod = demo.api.xcom(DAG_ID, run_id, TASK_ID, "pod_name")
    namespace = demo.api.xcom(DAG_ID, run_id, TASK_ID, "pod_namespace")
    browser.get(f"{demo.live_url}/details")
    link = wait_for(
        browser,
        lambda d: d.find_elements(By.XPATH, "//a[normalize-space()='Kubernetes Pod']"),
        timeout=60,
        what="the Kubernetes Pod extra link",
    )[0]
    href = link.get_attribute("href")
    assert href == demo.cluster_url + POD_PATH.format(namespace=namespace, pod=pod), href
    assert _get_pod(demo, href)["metadata"]["name"] == pod
    _still_deferred(demo, run_id, "the extra link was checked")


def test_after_the_pod_ends_the_task_is_success_with_its_xcom(demo: Demo, browser: WebDriver) -> None:
    run_id = demo.run_id(demo.live_url)
    demo.api.wait_task(DAG_ID, run_id, TASK_ID, timeout=SECONDS + 240, first=1, most=2)
    browser.get(demo.live_url)
    wait_for(browser, lambda d: task_state(d, TASK_ID) == "Success", timeout=60, what="the Success badge")
    wait_for(
        browser,
        lambda d: f"[base] line {SECONDS} of {SECONDS}" in log_text(d) and "succeeded" in log_text(d),
        timeout=60,
        what="the pod's last line and its success in the log",
    )
    browser.get(f"{demo.live_url}/xcom")
    wait_for(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=expand-all-button]"),
        timeout=60,
        what="the XCom table",
    )
    browser.find_element(By.CSS_SELECTOR, "[data-testid=expand-all-button]").click()
    wait_for(
        browser,
        lambda d: _xcom_row(d, "return_value").replace(" ", "").find(f'"lines":{SECONDS}') >= 0,
        timeout=60,
        what=f'the XCom return_value {{"lines": {SECONDS}}}',
    )


def _xcom_row(driver: WebDriver, key: str) -> str:
    """The text of the XCom table's row for `key`."""
    text = driver.execute_script(
        "for (const row of document.querySelectorAll('tr')) {"
        "  const cells = row.querySelectorAll('td');"
        "  if (cells.length && cells[0].innerText.trim() === arguments[0]) return row.innerText; }"
        "return '';",
        key,
    )
    return (text or "").replace("\xa0", " ")


def test_a_failed_pod_shows_the_reason_and_its_last_lines(
    demo: Demo, browser: WebDriver, screenshots: Path
) -> None:
    run_id = demo.run_id(demo.fails_url)
    ti = demo.api.wait_task(DAG_ID, run_id, TASK_ID, timeout=300, first=1, most=2)
    assert ti["state"] == "failed", ti
    browser.get(demo.fails_url)
    wait_for(browser, lambda d: task_state(d, TASK_ID) == "Failed", timeout=60, what="the Failed badge")
    expected = (
        "exited with code 3",
        "Last log lines:",
        "line 10 of 10",
        "giving up with exit code 3",
    )
    text = wait_for(
        browser,
        lambda d: (t := log_text(d)) and all(e in t for e in expected) and t,
        timeout=60,
        what=f"the failure's reason and last lines ({', '.join(expected)}) in the log",
    )
    assert "PodFailedError" in text, text[-2000:]
    assert scroll_into_view(browser, "Last log lines:")
    wait_for(browser, lambda d: "giving up with exit code 3" in log_text(d), timeout=10, what="the tail")
    shot = screenshot(browser, screenshots / FAILED_SHOT)
    print(f"\nfailure view: {shot}")


def test_ctrl_c_stops_every_process(demo: Demo) -> None:
    processes = psutil.Process(demo.proc.pid).children(recursive=True)
    assert len(processes) >= 5, processes  # the cluster and the four Airflow services at least
    started = time.monotonic()
    demo.proc.send_signal(signal.SIGINT)
    try:
        code = demo.proc.wait(120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the demo did not stop within 120 s of Ctrl-C:\n{demo.output[-3000:]}")
    took = time.monotonic() - started
    assert code == 0, demo.output[-3000:]
    assert "stopped: the cluster and every Airflow process are gone" in demo.output
    gone, alive = psutil.wait_procs(processes, timeout=5)
    alive = [p for p in alive if _running(p)]
    assert not alive, f"left running after Ctrl-C: {alive}"
    with pytest.raises(httpx.ConnectError):
        httpx.get(demo.base_url, timeout=5)
    print(f"\nCtrl-C: {len(gone)} processes stopped in {took:.1f}s")


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
