"""Real Airflow 3 services against the embedded cluster, as processes: the demo's and the tests' base.

`AirflowStack` gives a throw-away AIRFLOW_HOME (SQLite, LocalExecutor), starts the embedded
cluster (``python -m kpo_async.testing.sim``), ``airflow db migrate``, then ``airflow api-server``
(with the UI), ``scheduler``, ``dag-processor`` and ``triggerer``, each in its own session and so
its own process group: stopping one group leaves nothing of it behind, and a Ctrl-C in the
terminal reaches only the process that started them, which then stops them in order.

Every process writes its output to ``<workdir>/logs/services/<name>.log``; `tails()` shows the
end of each. A small REST client (`http`, `api`) drives the api-server: with a login when the
simple auth manager has users, or through its all-admins mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import psutil

AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
#: The pod in the embedded cluster's API: what the task's "Kubernetes Pod" extra link opens here.
POD_PATH = "/api/v1/namespaces/{namespace}/pods/{pod}"
TERMINAL_TI_STATES = ("success", "failed", "skipped", "upstream_failed", "removed")

T = TypeVar("T")


class StackError(AssertionError):
    """A service did not start, exited, or an API call failed (an AssertionError for tests)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    predicate: Callable[[], T], *, timeout: float, what: str, first: float = 0.2, most: float = 2.0
) -> T:
    """Poll `predicate` with backoff until it returns something truthy; its value, or raise."""
    deadline = time.monotonic() + timeout
    delay = first
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(min(delay, max(0.05, deadline - time.monotonic())))
        delay = min(most, delay * 1.5)


def stop_process_group(proc: subprocess.Popen, *, grace: float = 20.0, first: int = signal.SIGTERM) -> None:
    """Signal the process's whole group, wait, then SIGKILL whatever is left of the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, first)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def ti_path(dag_id: str, run_id: str, task_id: str) -> str:
    """A task instance's REST path (run ids hold ':' and '+')."""
    return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"


def stop_process_groups(procs: list[subprocess.Popen], *, grace: float = 20.0) -> None:
    """`stop_process_group` for several groups at once: SIGTERM to all, one shared grace period."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
    for proc in procs:
        stop_process_group(proc, grace=0, first=signal.SIGKILL)


@dataclass
class Service:
    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None


class AirflowStack:
    """The embedded cluster + Airflow's api-server, scheduler, dag-processor and triggerer."""

    def __init__(
        self,
        workdir: Path,
        dags_folder: Path,
        *,
        port: int | None = None,
        users: dict[str, str] | None = None,
        connections: dict[str, Callable[[AirflowStack], dict[str, Any]] | dict[str, Any]] | None = None,
        variables: dict[str, Callable[[AirflowStack], str] | str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """`users` maps user names to passwords (all admins); without it the UI needs no login."""
        self.workdir = Path(workdir)
        self.dags_folder = Path(dags_folder)
        self.home = self.workdir / "airflow"
        self.service_logs = self.workdir / "logs" / "services"
        self.kubeconfig = self.workdir / "sim" / "kubeconfig"
        self.users = dict(users or {})
        self.connections = dict(connections or {})
        self.variables = dict(variables or {})
        self.extra_env = dict(extra_env or {})
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.cluster_url = ""
        self.sim: Service | None = None
        self.services: dict[str, Service] = {}
        self.env: dict[str, str] = {}
        self.rest = AirflowApi(self.base_url, next(iter(self.users.items())) if self.users else None)

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> AirflowStack:
        try:
            self.start()
        except BaseException:
            print(self.tails(), file=sys.stderr)
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 240.0, on_step: Callable[[str], None] | None = None) -> None:
        step = on_step or (lambda _text: None)
        deadline = time.monotonic() + timeout
        self.service_logs.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        step("starting the embedded cluster")
        self.start_sim()
        self.env = self.airflow_env()
        self._write_passwords()
        step("migrating Airflow's metadata database (SQLite)")
        with open(self.service_logs / "db-migrate.log", "w") as log:
            migrated = subprocess.run(
                [AIRFLOW_BIN, "db", "migrate"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=max(30.0, deadline - time.monotonic()),
                check=False,
            )
        if migrated.returncode != 0:
            raise StackError(f"airflow db migrate failed ({migrated.returncode})")
        step("starting api-server, scheduler, dag-processor and triggerer")
        for name in SERVICES:
            args = [name, "--port", str(self.port), "--host", "127.0.0.1"] if name == "api-server" else [name]
            self.services[name] = Service(name, args, self.service_logs / f"{name}.log")
            self.start_service(name)
        self.wait_healthy(timeout=max(10.0, deadline - time.monotonic()))

    def stop(self) -> list[psutil.Process]:
        """Stop everything, the scheduler's task processes included; safe to call more than once.
        Returns the processes of the stack still alive afterwards (none, unless one cannot be killed)."""
        self.rest.close()
        started = self.processes()
        # All of Airflow at once (each needs seconds to shut down), before the cluster: nothing
        # may act on a cluster that is going away.
        stop_process_groups([s.proc for s in self.services.values() if s.proc is not None])
        if self.sim is not None and self.sim.proc is not None:
            stop_process_group(self.sim.proc, grace=10)
        # Task processes forked by the LocalExecutor may have left the scheduler's group.
        _, alive = psutil.wait_procs(started, timeout=1)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _, alive = psutil.wait_procs(alive, timeout=10)
        return alive

    def start_sim(self, *extra_args: str) -> None:
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.service_logs.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "kpo_async.testing.sim",
            "--kubeconfig",
            str(self.kubeconfig),
            *extra_args,
        ]
        log_path = self.service_logs / "sim.log"
        self.sim = Service("sim", args, log_path)
        with open(log_path, "w") as log:
            self.sim.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir
            )
        proc = self.sim.proc
        try:
            wait_until(
                lambda: proc.poll() is not None or "server:" in log_path.read_text(),
                timeout=60,
                what="the embedded cluster",
            )
        except BaseException:
            stop_process_group(proc, grace=5)
            raise
        if proc.poll() is not None:
            raise StackError(f"the embedded cluster exited: {log_path.read_text()[-2000:]}")
        for line in log_path.read_text().splitlines():
            if line.startswith("server:"):
                self.cluster_url = line.split(":", 1)[1].strip()

    def airflow_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__FERNET_KEY": "",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "AIRFLOW__KPO_ASYNC__POD_URL_TEMPLATE": self.cluster_url + POD_PATH,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # A known race fails short deferrals with the default of 5 s.
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                # A busy small machine can take over 30 s to import a DAG file in a new task process:
                # the task would then be rescheduled ("Dag not found during start up").
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "150",
                # The same busy machine answers a task's calls to the execution API slowly: the
                # default 5 s timeout (and its retries) would fail tasks that never started.
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
                # Never pick up the user's own cluster by accident.
                "KUBECONFIG": str(self.workdir / "no-default-kubeconfig"),
                "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
                    {"conn_type": "kubernetes", "extra": {"kube_config_path": str(self.kubeconfig)}}
                ),
            }
        )
        if self.users:
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(f"{name}:admin" for name in self.users)
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(self.passwords_file)
        else:
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
        for conn_id, conn in self.connections.items():
            value = conn(self) if callable(conn) else conn
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(value)
        for key, var in self.variables.items():
            env[f"AIRFLOW_VAR_{key.upper()}"] = var(self) if callable(var) else var
        env.update(self.extra_env)
        return env

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def _write_passwords(self) -> None:
        """The simple auth manager reads users' passwords from this file (it would make up its own)."""
        if self.users:
            self.passwords_file.write_text(json.dumps(self.users) + "\n")
            self.passwords_file.chmod(0o600)

    def start_service(self, name: str) -> Service:
        service = self.services[name]
        with open(service.log_path, "a") as log:
            service.proc = subprocess.Popen(
                [AIRFLOW_BIN, *service.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.workdir,
            )
        return service

    def processes(self) -> list[psutil.Process]:
        """Every live process of the stack (services, their children, the cluster)."""
        found: list[psutil.Process] = []
        for service in [*self.services.values(), *([self.sim] if self.sim else [])]:
            if service.proc is None or service.proc.poll() is not None:
                continue
            with contextlib.suppress(psutil.Error):
                parent = psutil.Process(service.proc.pid)
                found += [parent, *parent.children(recursive=True)]
        return found

    def wait_healthy(self, timeout: float = 180.0) -> None:
        wanted = ("metadatabase", "scheduler", "triggerer", "dag_processor")

        def healthy() -> bool:
            for service in self.services.values():
                if service.proc is not None and service.proc.poll() is not None:
                    raise StackError(f"{service.name} exited with {service.proc.returncode}")
            try:
                body = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return False
            return all((body.get(name) or {}).get("status") == "healthy" for name in wanted)

        wait_until(healthy, timeout=timeout, what=f"healthy {', '.join(wanted)}", first=0.5)

    # -- diagnostics ---------------------------------------------------------------------------
    def tails(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.service_logs.glob("*.log")):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"----- {path.name} (last {len(text)} lines) -----\n" + "\n".join(text))
        return "\n".join(out)


class AirflowApi:
    """A small client of Airflow's REST API (v2), logged in as a user or through all-admins mode."""

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

    def trigger_dag(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        body = {"logical_date": None, "conf": conf or {}}
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        )

    def wait_task(
        self, dag_id: str, run_id: str, task_id: str, states: Iterable[str] = TERMINAL_TI_STATES, **wait: Any
    ) -> dict[str, Any]:
        """Poll the task instance until its state is one of `states` (`wait`: wait_until's options)."""
        wanted = tuple(states)

        def check() -> dict[str, Any] | None:
            ti = self.task_instance(dag_id, run_id, task_id)
            return ti if ti["state"] in wanted else None

        wait.setdefault("timeout", 180.0)
        return wait_until(check, what=f"{dag_id}/{run_id}/{task_id} to be {'/'.join(wanted)}", **wait)

    def log_events(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> list[str]:
        """The task's log lines as the REST endpoint serves them (task and trigger logs)."""
        body = self.api(
            "GET",
            f"{ti_path(dag_id, run_id, task_id)}/logs/{try_number}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        )
        return [
            str(item.get("event", "")) if isinstance(item, dict) else str(item) for item in body["content"]
        ]

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

    def task_url(self, dag_id: str, run_id: str, task_id: str) -> str:
        """The task instance's page in the UI (its log is the page's first tab)."""
        return f"{self.base_url}/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/{task_id}"
