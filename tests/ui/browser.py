"""Headless Chromium (Debian's packages) driven by Selenium, for the Airflow UI tests.

The browser and its driver are Debian's ``chromium`` and ``chromium-driver`` (tools/ui-deps.sh
installs them). Both paths are given to Selenium explicitly, and Selenium Manager is told to stay
offline, so nothing is ever downloaded. The flags keep Chromium from calling home: it talks only
to the api-server on loopback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--window-size=1440,900",
)
#: Every rendered row of the log viewer (a virtualized list: only the rows in view exist).
LOG_ROWS = "[data-testid=virtualized-list]"


def missing_browser() -> str | None:
    """Why the browser cannot start, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: run tools/ui-deps.sh (apt packages chromium, chromium-driver)"
    return None


def start_browser(profile: Path) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # Selenium Manager would look for (and could download) a driver and browser: it is not needed.
    os.environ["SE_OFFLINE"] = "true"
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def wait_for(driver: WebDriver, condition, *, timeout: float, what: str):
    """WebDriverWait with a message saying what was awaited and what the page showed."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what}\nat {driver.current_url}\n"
            f"page text (end):\n{page_text(driver)[-3000:]}"
        ) from None


def login(driver: WebDriver, base_url: str, user: str, password: str) -> None:
    """Log in through the simple auth manager's login form."""
    driver.get(f"{base_url}/auth/login")
    wait_for(driver, lambda d: d.find_elements(By.NAME, "username"), timeout=90, what="the login form")
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(
        driver,
        lambda d: "/auth/login" not in d.current_url and d.get_cookie("_token"),
        timeout=60,
        what="the login to succeed",
    )


def page_text(driver: WebDriver) -> str:
    """The page's visible text, read in one go (React re-renders would make elements stale)."""
    text = driver.execute_script("return document.body ? document.body.innerText : ''") or ""
    return text.replace("\xa0", " ")


def log_text(driver: WebDriver) -> str:
    """The text of the log viewer's rendered rows ("" until it has rendered)."""
    text = driver.execute_script(
        "const l = document.querySelector(arguments[0]); return l ? l.innerText : ''", LOG_ROWS
    )
    return (text or "").replace("\xa0", " ")


def pod_line_numbers(text: str) -> list[int]:
    """The numbers of the long pod's lines ("[base] line 7 of 120") in a log text."""
    return [int(n) for n in re.findall(r"\[base\] line (\d+) of \d+", text)]


def task_state(driver: WebDriver, task_id: str) -> str:
    """The state badge next to the task's name in the task instance page's header."""
    badges = driver.find_elements(
        By.XPATH, f"//h2[normalize-space()='{task_id}']/following-sibling::span[@data-testid='state-badge']"
    )
    try:
        return badges[0].text.strip() if badges else ""
    except Exception:  # re-rendered between find and read: try again on the next poll
        return ""


def scroll_into_view(driver: WebDriver, text: str) -> bool:
    """Scroll the log viewer so that the row containing `text` is in the middle of the view."""
    return bool(
        driver.execute_script(
            "const rows = document.querySelectorAll('[data-testid^=virtualized-item]');"
            "for (const row of rows) { if (row.innerText.includes(arguments[0])) {"
            "  row.scrollIntoView({block: 'center'}); return true; } }"
            "return false;",
            text,
        )
    )


def screenshot(driver: WebDriver, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"could not save a screenshot to {path}")
    return path
