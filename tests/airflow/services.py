"""Real Airflow 3 services against the embedded cluster, for cross-process tests.

`AirflowServices` gives a throw-away AIRFLOW_HOME (SQLite, LocalExecutor), starts the embedded
cluster (`python -m kpo_async.testing.sim`) and `airflow api-server`, `scheduler`, `dag-processor` and
`triggerer` as subprocesses (each its own process group, so stopping one leaves nothing behind),
and drives them over the public REST API: trigger runs, wait for states, read task logs (every
try, trigger logs interleaved by Airflow), read XComs, mark task instances failed/success. It
can kill (SIGTERM / SIGKILL) and restart the triggerer and find a running task's process.

Every service writes its output to ``<workdir>/logs/services/<name>.log``; `tails()` shows the end
of each, for a failing test's report.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO / "example_dags"
TEST_DAGS = Path(__file__).resolve().parent / "dags"
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))
TERMINAL_RUN_STATES = ("success", "failed")
TERMINAL_TI_STATES = ("success", "failed", "skipped", "upstream_failed", "removed")
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


class ServiceError(AssertionError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, *, timeout: float, what: str, first: float = 0.2, most: float = 2.0):
    """Poll `predicate` with backoff until it returns something truthy; its value, or raise."""
    deadline = time.monotonic() + timeout
    delay = first
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(min(delay, max(0.05, deadline - time.monotonic())))
        delay = min(most, delay * 1.5)


def stop_process_group(proc: subprocess.Popen, *, grace: float = 20.0, first: int = signal.SIGTERM) -> None:
    """Signal the process's whole group, wait, then SIGKILL whatever is left of the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, first)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) succeeds for zombies too: look for a live member.
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


@dataclass
class Service:
    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    generation: int = 0


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
        prefix = f"[{container}] "
        return [e[len(prefix) :] for e in self.events(try_number) if e.startswith(prefix)]


class AirflowServices:
    """Airflow 3 (api-server, scheduler, dag-processor, triggerer) + the embedded cluster."""

    def __init__(
        self,
        workdir: Path,
        *,
        dag_files: Iterable[Path] = (),
        sim_token: str | None = None,
        connections: dict[str, Any] | None = None,
        variables: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        database: str = "sqlite",
        service_args: dict[str, list[str]] | None = None,
    ) -> None:
        if database not in ("sqlite", "postgres"):
            raise ValueError(f"database must be 'sqlite' or 'postgres', not {database!r}")
        self.workdir = Path(workdir)
        #: "postgres": a private PostgreSQL (tools/postgres.sh) on loopback, data under workdir.
        self.database = database
        self.pg_dir = self.workdir / "pg" / "data"
        self.sql_url = ""
        self.home = self.workdir / "airflow"
        self.dags_folder = self.workdir / "dags"
        self.service_logs = self.workdir / "logs" / "services"
        self.task_logs = self.home / "logs"
        self.db_path = self.home / "airflow.db"
        self.kubeconfig = self.workdir / "sim" / "kubeconfig"
        self.dag_files = list(dag_files)
        self.sim_token = sim_token
        self.connections = connections or {}
        self.variables = variables or {}
        self.extra_env = extra_env or {}
        #: Extra command-line arguments per service at its first start, e.g. a triggerer's --capacity.
        self.service_args = service_args or {}
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.sim: Service | None = None
        self.services: dict[str, Service] = {}
        self.env: dict[str, str] = {}
        self._http: httpx.Client | None = None
        self._token: str | None = None
        self.started_at: dict[str, float] = {}
        self._stray: list[psutil.Process] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> AirflowServices:
        try:
            self.start()
        except BaseException:
            print(self.tails(), file=sys.stderr)
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        self.service_logs.mkdir(parents=True, exist_ok=True)
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        for dag_file in self.dag_files:
            shutil.copy(dag_file, self.dags_folder / Path(dag_file).name)
        self._start_sim()
        if self.database == "postgres":
            self.sql_url = start_postgres(self.pg_dir)
        else:
            self.sql_url = f"sqlite:///{self.db_path}"
        self.env = self._airflow_env()
        migrated = subprocess.run(
            [AIRFLOW_BIN, "db", "migrate"],
            env=self.env,
            stdout=open(self.service_logs / "db-migrate.log", "w"),
            stderr=subprocess.STDOUT,
            timeout=max(30.0, deadline - time.monotonic()),
            check=False,
        )
        if migrated.returncode != 0:
            raise ServiceError(f"airflow db migrate failed ({migrated.returncode})")
        for name in SERVICES:
            args = (
                ["api-server", "--port", str(self.port), "--host", "127.0.0.1"]
                if name == "api-server"
                else [name]
            )
            args += self.service_args.get(name, [])
            self.services[name] = Service(name, args, self.service_logs / f"{name}.log")
            self.start_service(name)
        self.wait_healthy(timeout=max(10.0, deadline - time.monotonic()))

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self._stray = []
        for service in self.services.values():
            if service.proc is not None and service.proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    self._stray += psutil.Process(service.proc.pid).children(recursive=True)
        # Triggerers and scheduler first: they must not act on a cluster that is going away.
        extra_triggerers = tuple(name for name in self.services if name.startswith("triggerer-"))
        for name in (*extra_triggerers, "triggerer", "scheduler", "dag-processor", "api-server"):
            service = self.services.get(name)
            if service is not None and service.proc is not None:
                stop_process_group(service.proc)
        if self.sim is not None and self.sim.proc is not None:
            stop_process_group(self.sim.proc, grace=10)
        # Task processes forked by the LocalExecutor live in the scheduler's group; be sure.
        for proc in self._stray:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if self.database == "postgres":
            stop_postgres(self.pg_dir)

    def _start_sim(self) -> None:
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "kpo_async.testing.sim", "--kubeconfig", str(self.kubeconfig)]
        if self.sim_token:
            args += ["--token", self.sim_token]
        log_path = self.service_logs / "sim.log"
        self.sim = Service("sim", args, log_path)
        self.sim.proc = subprocess.Popen(
            args,
            stdout=open(log_path, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )
        try:
            wait_until(
                lambda: self.sim.proc.poll() is not None or "kubeconfig:" in log_path.read_text(),
                timeout=60,
                what="the embedded cluster",
            )
        except BaseException:
            stop_process_group(self.sim.proc, grace=5)
            raise
        if self.sim.proc.poll() is not None:
            raise ServiceError(f"the embedded cluster exited: {log_path.read_text()[-2000:]}")

    def _airflow_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__FERNET_KEY": "",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_url or f"sqlite:///{self.db_path}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                # Airflow 3.0 serves `?deserialize=true` XCom reads only with this (3.1+ always).
                "AIRFLOW__API__ENABLE_XCOM_DESERIALIZE_SUPPORT": "True",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.task_logs),
                # Free ports: other test sessions may run their own Airflow on this machine.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # A known race fails short deferrals with the default of 5 s.
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                # After a SIGKILL the old triggerer's triggers move to the new one this soon.
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
                # A worker parses its DAG file again before running the task; on a loaded 2-core
                # machine several workers starting at once took over the default 30 s, and Airflow
                # rescheduled their tasks ("DagBag import timeout"), again and again. A first parse
                # (cold imports, no .pyc yet) can take as long, and a timed-out file is not parsed
                # again for the interval below.
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
                "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "300",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                # Tests must never pick up a developer's own cluster by accident.
                "KUBECONFIG": str(self.workdir / "no-default-kubeconfig"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
                    {"conn_type": "kubernetes", "extra": {"kube_config_path": str(self.kubeconfig)}}
                ),
            }
        )
        for conn_id, conn in self.connections.items():
            if callable(conn):  # needs the running cluster (its kubeconfig)
                conn = conn(self)
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        for key, value in self.variables.items():
            env[f"AIRFLOW_VAR_{key.upper()}"] = value
        env.update(self.extra_env)
        return env

    def start_service(self, name: str) -> Service:
        service = self.services[name]
        service.generation += 1
        log = open(service.log_path, "a")
        log.write(f"\n===== start #{service.generation} at {time.strftime('%H:%M:%S')} =====\n")
        log.flush()
        service.proc = subprocess.Popen(
            [AIRFLOW_BIN, *service.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.workdir,
        )
        log.close()
        self.started_at[name] = time.time()
        return service

    def signal_service(self, name: str, sig: int, *, whole_group: bool) -> None:
        proc = self.services[name].proc
        assert proc is not None
        if whole_group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)

    def stop_service(self, name: str, sig: int = signal.SIGTERM, *, timeout: float = 60.0) -> float:
        """Stop a service: SIGTERM to its main process (as a container runtime does) or SIGKILL to
        its whole group (as when its container or node dies). Returns how long it took."""
        proc = self.services[name].proc
        assert proc is not None
        started = time.monotonic()
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"{name} did not exit {timeout}s after signal {sig}; killing its group", file=sys.stderr)
        # Children (the trigger runner subprocess) must be gone too before a successor starts.
        with contextlib.suppress(ProcessLookupError):
            wait_until(lambda: not group_alive(proc.pid), timeout=30, what=f"{name}'s process group to exit")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        return time.monotonic() - started

    def add_triggerer(self, name: str, *args: str) -> Service:
        """Start one more `airflow triggerer` (HA: several share the triggers); name 'triggerer-<x>'."""
        if not name.startswith("triggerer-"):
            raise ValueError(f"an extra triggerer's name must start with 'triggerer-', not {name!r}")
        self.services[name] = Service(name, ["triggerer", *args], self.service_logs / f"{name}.log")
        return self.start_service(name)

    def restart_triggerer(self, sig: int = signal.SIGTERM) -> float:
        """Stop the triggerer with `sig`, start a new one, wait until it is healthy again."""
        took = self.stop_service("triggerer", sig)
        self.start_service("triggerer")
        self.wait_healthy(timeout=120, components=("triggerer",))
        return took

    def wait_healthy(self, timeout: float = 180.0, components: Iterable[str] | None = None) -> None:
        wanted = tuple(components or ("metadatabase", "scheduler", "triggerer", "dag_processor"))

        def healthy() -> bool:
            for service in self.services.values():
                if service.proc is not None and service.proc.poll() is not None:
                    raise ServiceError(f"{service.name} exited with {service.proc.returncode}")
            try:
                body = self.http.get("/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return False
            for name in wanted:
                part = body.get(name) or {}
                if part.get("status") != "healthy":
                    return False
                if name == "triggerer" and "triggerer" in self.services:
                    beat = part.get("latest_triggerer_heartbeat")
                    if not beat or _epoch(beat) < self.started_at["triggerer"]:
                        return False
            return True

        wait_until(healthy, timeout=timeout, what=f"healthy {', '.join(wanted)}", first=0.5)

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120.0) -> None:
        for dag_id in dag_ids:
            wait_until(
                lambda dag_id=dag_id: self.http.get(f"/api/v2/dags/{dag_id}").status_code == 200,
                timeout=timeout,
                what=f"DAG {dag_id} to be parsed",
                first=0.5,
            )

    # -- REST ----------------------------------------------------------------------------------
    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.base_url, timeout=30)
            try:
                response = self._http.get("/auth/token")
                if response.status_code in (200, 201):
                    self._token = response.json()["access_token"]
                    self._http.headers["Authorization"] = f"Bearer {self._token}"
            except (httpx.HTTPError, ValueError, KeyError):
                pass  # not up yet; the all-admins middleware authorizes anyway
        return self._http

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ServiceError(f"{method} {path}: {response.status_code} {response.text[:2000]}")
        return response.json() if response.content else None

    def trigger_dag(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def wait_run(self, dag_id: str, run_id: str, states=TERMINAL_RUN_STATES, timeout: float = 180.0) -> dict:
        return wait_until(
            lambda: (run := self.dag_run(dag_id, run_id))["state"] in states and run,
            timeout=timeout,
            what=f"run {dag_id}/{run_id} to be {'/'.join(states)}",
            most=1.0,
        )

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")

    def wait_task(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states=TERMINAL_TI_STATES,
        timeout: float = 180.0,
        poll: float = 0.5,
        seen: list[str] | None = None,
    ) -> dict[str, Any]:
        """Poll the task instance until its state is one of `states`; `seen` collects the states."""

        def check() -> dict | None:
            ti = self.task_instance(dag_id, run_id, task_id)
            if seen is not None and (not seen or seen[-1] != ti["state"]):
                seen.append(ti["state"])
            return ti if ti["state"] in states else None

        return wait_until(
            check,
            timeout=timeout,
            what=f"{dag_id}/{run_id}/{task_id} to be {'/'.join(states)}",
            first=poll,
            most=poll,
        )

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int | None = None) -> TaskLog:
        """The task's log as the REST endpoint serves it (task and trigger logs), for one or all tries."""
        if try_number is None:
            ti = self.task_instance(dag_id, run_id, task_id)
            tries = range(1, max(1, int(ti.get("try_number") or 1)) + 1)
        else:
            tries = [try_number]
        log = TaskLog()
        for number in tries:
            body = self.api(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{number}",
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

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        body = self.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"deserialize": "true"},
        )
        value = body["value"]
        # Depending on how it was stored, a JSON object may come back as its text.
        if isinstance(value, str) and value[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> Any:
        return self.api(
            "PATCH",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
            json={"new_state": state},
        )

    # -- metadata DB (read-only) ---------------------------------------------------------------
    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read-only SQL with ``?`` placeholders, on SQLite or PostgreSQL."""
        if self.database == "postgres":
            return query_postgres(self.sql_url, sql, params)
        uri = f"file:{self.db_path}?mode=ro"
        for attempt in itertools.count():
            try:
                with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
                    return db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt >= 5:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def trigger_rows(self, dag_id: str, run_id: str, task_id: str) -> list[tuple]:
        """Trigger rows still referenced by the task instance, plus any trigger left for it."""
        return self.query(
            "SELECT t.id, t.classpath, t.triggerer_id FROM trigger t JOIN task_instance ti "
            "ON ti.trigger_id = t.id WHERE ti.dag_id=? AND ti.run_id=? AND ti.task_id=?",
            (dag_id, run_id, task_id),
        )

    def triggers_mentioning(self, text: str) -> list[tuple]:
        """Trigger rows whose kwargs contain `text` (e.g. a pod name)."""
        return self.query("SELECT id, classpath FROM trigger WHERE kwargs LIKE ?", (f"%{text}%",))

    # -- processes -----------------------------------------------------------------------------
    def find_task_process(self, ti_id: str) -> psutil.Process | None:
        """The process running a task instance: Airflow titles it ``airflow worker -- <ti id>``.

        (setproctitle overwrites the environment area too, so it is found by title among the
        scheduler's descendants, the LocalExecutor's workers, rather than by AIRFLOW_HOME.)
        """
        title = f"airflow worker -- {ti_id}"
        scheduler = self.services["scheduler"].proc
        candidates: list[psutil.Process] = []
        if scheduler is not None:
            with contextlib.suppress(psutil.Error):
                candidates = psutil.Process(scheduler.pid).children(recursive=True)
        for proc in candidates:
            with contextlib.suppress(psutil.Error):
                if title in " ".join(proc.cmdline()):
                    return proc
        return None

    # -- the embedded cluster ------------------------------------------------------------------
    def list_pods(
        self, namespace: str = "default", label_selector: str | None = None, include_deleting: bool = False
    ) -> list[dict[str, Any]]:
        from kubernetes_asyncio import client, config

        async def go() -> list[dict[str, Any]]:
            api = await config.new_client_from_config(config_file=str(self.kubeconfig))
            async with api:
                kwargs = {"label_selector": label_selector} if label_selector else {}
                pods = await client.CoreV1Api(api).list_namespaced_pod(namespace, **kwargs)
                return [
                    api.sanitize_for_serialization(p)
                    for p in pods.items
                    if include_deleting or not p.metadata.deletion_timestamp
                ]

        return asyncio.run(go())

    def sim_stats(self) -> dict[str, Any]:
        from kpo_async.testing.sim.control import SimControl

        async def go() -> dict[str, Any]:
            async with SimControl(str(self.kubeconfig)) as ctl:
                return await ctl.stats()

        return asyncio.run(go())

    # -- diagnostics ---------------------------------------------------------------------------
    def tails(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.service_logs.glob("*.log")):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"----- {path.name} (last {len(text)} lines) -----\n" + "\n".join(text))
        return "\n".join(out)

    def written_files(self) -> Iterator[Path]:
        """Every file the services wrote (task/trigger logs, service logs, DB, config)."""
        for path in self.workdir.rglob("*"):
            if path.is_file():
                yield path


POSTGRES_SH = REPO / "tools" / "postgres.sh"


def start_postgres(data_dir: Path) -> str:
    """Start a private PostgreSQL (tools/postgres.sh) with its data in `data_dir`; its SQLAlchemy URL."""
    done = subprocess.run(
        [str(POSTGRES_SH), "start", str(data_dir)], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise ServiceError(f"tools/postgres.sh start failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def stop_postgres(data_dir: Path) -> None:
    subprocess.run([str(POSTGRES_SH), "stop", str(data_dir)], check=False, timeout=120)


def query_postgres(sql_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    import psycopg2

    with contextlib.closing(psycopg2.connect(sql_url.replace("postgresql+psycopg2", "postgresql"))) as db:
        with db.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall()


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
