"""A small client of Airflow's REST API (v2): trigger runs, wait for states, read task logs (every
try, trigger logs interleaved by Airflow) and XComs, mark task instances. Logged in as a user, or
through the simple auth manager's all-admins mode."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from kpo_async.testing import logcapture
from kpo_async.testing.procs import StackError, wait_until

TERMINAL_RUN_STATES = ("success", "failed")
TERMINAL_TI_STATES = ("success", "failed", "skipped", "upstream_failed", "removed")


def ti_path(dag_id: str, run_id: str, task_id: str) -> str:
    """A task instance's REST path (run ids hold ':' and '+')."""
    return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"


@dataclass
class LogLine:
    """One entry of a task log as the REST endpoint serves it."""

    try_number: int
    event: str
    raw: Any
    source: str = ""

    def __str__(self) -> str:
        return f"[try {self.try_number}] {self.event}"


@dataclass
class TaskLog:
    lines: list[LogLine] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(str(line) for line in self.lines)

    @property
    def raw_text(self) -> str:
        """Every entry with all its fields (exception details included), as JSON lines."""
        return "\n".join(json.dumps(line.raw, default=str) for line in self.lines)

    def events(self, try_number: int | None = None) -> list[str]:
        return [line.event for line in self.lines if try_number is None or line.try_number == try_number]

    def pod_lines(self, try_number: int | None = None, container: str = "base") -> list[str]:
        return logcapture.pod_lines(self.events(try_number), container)


class AirflowApi:
    """The REST client, logged in as `login` (name, password) or through all-admins mode."""

    def __init__(self, base_url: str, login: tuple[str, str] | None = None) -> None:
        self.base_url = base_url
        self.login = login
        self._http: httpx.Client | None = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            client = httpx.Client(base_url=self.base_url, timeout=60)
            if self.login:
                name, password = self.login
                response = client.post("/auth/token", json={"username": name, "password": password})
            else:
                response = client.get("/auth/token")
            if response.status_code not in (200, 201):
                client.close()
                raise StackError(f"no API token: {response.status_code} {response.text[:500]}")
            client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
            self._http = client
        return self._http

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call; a GET is retried on a transport error (a busy api-server can time out)."""
        attempts = 3 if method.upper() == "GET" else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self.http.request(method, path, **kwargs)
                break
            except httpx.TransportError:
                if attempt == attempts:
                    raise
                time.sleep(2 * attempt)
        if response.status_code >= 400:
            raise StackError(f"{method} {path}: {response.status_code} {response.text[:2000]}")
        return response.json() if response.content else None

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120.0) -> None:
        for dag_id in dag_ids:
            wait_until(
                lambda dag_id=dag_id: self._status(f"/api/v2/dags/{dag_id}") == 200,
                timeout=timeout,
                what=f"DAG {dag_id} to be parsed",
                first=0.5,
            )

    def _status(self, path: str) -> int | None:
        try:
            return self.http.get(path).status_code
        except httpx.TransportError:
            return None

    def trigger_dag(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")

    def wait_run(
        self, dag_id: str, run_id: str, states: Iterable[str] = TERMINAL_RUN_STATES, timeout: float = 180.0
    ) -> dict[str, Any]:
        wanted = tuple(states)
        return wait_until(
            lambda: (run := self.dag_run(dag_id, run_id))["state"] in wanted and run,
            timeout=timeout,
            what=f"run {dag_id}/{run_id} to be {'/'.join(wanted)}",
            most=1.0,
        )

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.api("GET", ti_path(dag_id, run_id, task_id))

    def wait_task(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str] = TERMINAL_TI_STATES,
        *,
        timeout: float = 180.0,
        poll: float = 0.5,
        first: float | None = None,
        most: float | None = None,
        seen: list[str] | None = None,
    ) -> dict[str, Any]:
        """Poll the task instance until its state is one of `states` (every `poll` seconds, or from
        `first` backing off to `most`); `seen` collects the states it went through."""
        wanted = tuple(states)

        def check() -> dict[str, Any] | None:
            # Airflow 3.0's scheduler creates a run's task instances after the POST returns: 404 is
            # "not yet", not an error.
            if self._status(ti_path(dag_id, run_id, task_id)) == 404:
                return None
            ti = self.task_instance(dag_id, run_id, task_id)
            if seen is not None and (not seen or seen[-1] != ti["state"]):
                seen.append(ti["state"])
            return ti if ti["state"] in wanted else None

        return wait_until(
            check,
            timeout=timeout,
            what=f"{dag_id}/{run_id}/{task_id} to be {'/'.join(wanted)}",
            first=poll if first is None else first,
            most=poll if most is None else most,
        )

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int | None = None) -> TaskLog:
        """The task's log as the REST endpoint serves it (task and trigger logs), for one or all tries."""
        if try_number is None:
            ti = self.task_instance(dag_id, run_id, task_id)
            tries: Iterable[int] = range(1, max(1, int(ti.get("try_number") or 1)) + 1)
        else:
            tries = [try_number]
        log = TaskLog()
        for number in tries:
            body = self.api(
                "GET",
                f"{ti_path(dag_id, run_id, task_id)}/logs/{number}",
                params={"full_content": "true"},
                headers={"Accept": "application/json"},
            )
            for item in body.get("content") or []:
                if isinstance(item, dict):
                    event = str(item.get("event", ""))
                    source = str(item.get("sources") or item.get("logger") or "")
                else:
                    event, source = str(item), ""
                log.lines.append(LogLine(number, event, item, source))
        return log

    def log_events(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> list[str]:
        """One try's log lines (task and trigger logs)."""
        return self.task_log(dag_id, run_id, task_id, try_number).events()

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        body = self.api(
            "GET", f"{ti_path(dag_id, run_id, task_id)}/xcomEntries/{key}", params={"deserialize": "true"}
        )
        value = body["value"]
        # Depending on how it was stored, a JSON value may come back as its text.
        if isinstance(value, str) and value[:1] in ('"', "{", "["):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> Any:
        return self.api("PATCH", ti_path(dag_id, run_id, task_id), json={"new_state": state})

    def task_url(self, dag_id: str, run_id: str, task_id: str) -> str:
        """The task instance's page in the UI (its log is the page's first tab)."""
        return f"{self.base_url}/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/{task_id}"
