"""Real Airflow 3 services against the embedded cluster, as processes: the one harness behind
`kpo-async demo --ui` and the real-services tests (tests/airflow/services.py).

`AirflowStack` gives a throw-away AIRFLOW_HOME (LocalExecutor on SQLite, or on a private PostgreSQL
with ``database="postgres"``), starts the embedded cluster (`harness.SimProcess`), ``airflow db
migrate``, then ``airflow api-server`` (with the UI), ``scheduler``, ``dag-processor`` and
``triggerer``, each in its own session and so its own process group: stopping one group leaves
nothing of it behind, and a Ctrl-C in the terminal reaches only the process that started them,
which then stops them in order. It can stop (SIGTERM / SIGKILL), restart and add triggerers, find a
running task's process, and read the metadata DB. It is its own REST client (`AirflowApi`).

Every process writes its output to ``<workdir>/logs/services/<name>.log``; `tails()` shows the
end of each.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from kpo_async.testing.airflow_api import (
    TERMINAL_RUN_STATES,
    TERMINAL_TI_STATES,
    AirflowApi,
    LogLine,
    TaskLog,
    ti_path,
)
from kpo_async.testing.harness import SimProcess
from kpo_async.testing.postgres import query_postgres, start_postgres, stop_postgres
from kpo_async.testing.procs import (
    StackError,
    epoch,
    free_port,
    group_alive,
    inherited_env,
    stop_process_group,
    stop_process_groups,
    wait_until,
)

__all__ = [
    "AIRFLOW_BIN",
    "POD_PATH",
    "SERVICES",
    "TERMINAL_RUN_STATES",
    "TERMINAL_TI_STATES",
    "AirflowApi",
    "AirflowStack",
    "LogLine",
    "Service",
    "StackError",
    "TaskLog",
    "free_port",
    "stop_process_group",
    "ti_path",
    "wait_until",
]

AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
DATABASES = ("sqlite", "postgres")
#: The pod in the embedded cluster's API: what the task's "Kubernetes Pod" extra link opens here.
POD_PATH = "/api/v1/namespaces/{namespace}/pods/{pod}"

Setting = Callable[["AirflowStack"], Any]


@dataclass
class Service:
    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    generation: int = 0


class AirflowStack(AirflowApi):
    """The embedded cluster + Airflow's api-server, scheduler, dag-processor and triggerer."""

    def __init__(
        self,
        workdir: Path,
        dags_folder: Path | None = None,
        *,
        port: int | None = None,
        users: dict[str, str] | None = None,
        connections: dict[str, Setting | dict[str, Any]] | None = None,
        variables: dict[str, Setting | str] | None = None,
        extra_env: dict[str, str] | None = None,
        database: str = "sqlite",
        service_args: dict[str, list[str]] | None = None,
        sim_args: Iterable[str] = (),
    ) -> None:
        """`users` maps user names to passwords (all admins); without it the UI needs no login.
        `connections`/`variables` values may be callables of the started stack (its kubeconfig).
        `service_args`: extra arguments per service at its first start (a triggerer's --capacity).
        """
        if database not in DATABASES:
            raise ValueError(f"database must be one of {DATABASES}, not {database!r}")
        self.workdir = Path(workdir)
        self.dags_folder = Path(dags_folder) if dags_folder else self.workdir / "dags"
        self.home = self.workdir / "airflow"
        self.service_logs = self.workdir / "logs" / "services"
        self.task_logs = self.home / "logs"
        self.db_path = self.home / "airflow.db"
        self.kubeconfig = self.workdir / "sim" / "kubeconfig"
        self.users = dict(users or {})
        self.connections = dict(connections or {})
        self.variables = dict(variables or {})
        self.extra_env = dict(extra_env or {})
        self.service_args = dict(service_args or {})
        self.sim_args = list(sim_args)
        #: "postgres": a private PostgreSQL (tools/postgres.sh) on loopback, its data under workdir.
        self.database = database
        self.pg_dir = self.workdir / "pg" / "data"
        self.sql_url = ""
        self.port = port or free_port()
        self.cluster_url = ""
        self.sim: SimProcess | None = None
        self.services: dict[str, Service] = {}
        self.env: dict[str, str] = {}
        self.started_at: dict[str, float] = {}
        super().__init__(
            f"http://127.0.0.1:{self.port}", next(iter(self.users.items())) if self.users else None
        )

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

    def prepare(self) -> None:
        """The directories the stack writes to."""
        for path in (self.service_logs, self.home, self.dags_folder):
            path.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 240.0, on_step: Callable[[str], None] | None = None) -> None:
        step = on_step or (lambda _text: None)
        deadline = time.monotonic() + timeout
        self.prepare()
        step("starting the embedded cluster")
        self.start_sim()
        if self.database == "postgres":
            step("starting PostgreSQL")
            self.sql_url = start_postgres(self.pg_dir)
        self.env = self.airflow_env()
        self._write_passwords()
        step(f"migrating Airflow's metadata database ({self.database})")
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
            self.services[name] = Service(
                name, args + self.service_args.get(name, []), self.service_logs / f"{name}.log"
            )
            self.start_service(name)
        self.wait_healthy(timeout=max(10.0, deadline - time.monotonic()))

    def stop(self) -> list[psutil.Process]:
        """Stop everything, the scheduler's task processes and PostgreSQL included; safe to call more
        than once. Returns the stack's processes still alive afterwards (none, unless unkillable)."""
        self.close()
        started = self.processes()
        # All of Airflow at once (each needs seconds to shut down), before the cluster: nothing
        # may act on a cluster that is going away.
        stop_process_groups([s.proc for s in self.services.values() if s.proc is not None])
        if self.sim is not None:
            stop_process_group(self.sim.process, grace=10)
        # Task processes forked by the LocalExecutor may have left the scheduler's group.
        _, alive = psutil.wait_procs(started, timeout=1)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _, alive = psutil.wait_procs(alive, timeout=10)
        if self.database == "postgres":
            stop_postgres(self.pg_dir)
        return alive

    def start_sim(self) -> None:
        """The embedded cluster in its own process group, its output in the services' logs."""
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.service_logs.mkdir(parents=True, exist_ok=True)
        try:
            self.sim = SimProcess(
                str(self.kubeconfig.parent),
                *self.sim_args,
                log_path=str(self.service_logs / "sim.log"),
                new_session=True,
            )
        except RuntimeError as exc:
            raise StackError(str(exc)) from exc
        self.cluster_url = self.sim.server_url

    def airflow_env(self) -> dict[str, str]:
        """The environment of every Airflow process of the stack."""
        env = inherited_env()
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
                # Free ports: other sessions may run their own Airflow on this machine.
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
                # The same busy machine answers a task's calls to the execution API slowly: the
                # default 5 s timeout (and its retries) would fail tasks that never started.
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                # Never pick up the user's own cluster by accident.
                "KUBECONFIG": str(self.workdir / "no-default-kubeconfig"),
                "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
                    {"conn_type": "kubernetes", "extra": {"kube_config_path": str(self.kubeconfig)}}
                ),
            }
        )
        if self.cluster_url:  # the task's "Kubernetes Pod" link opens the pod in the embedded cluster
            env["AIRFLOW__KPO_ASYNC__POD_URL_TEMPLATE"] = self.cluster_url + POD_PATH
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

    # -- services ------------------------------------------------------------------------------
    def start_service(self, name: str) -> Service:
        service = self.services[name]
        service.generation += 1
        with open(service.log_path, "a") as log:
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

    def processes(self) -> list[psutil.Process]:
        """Every live process of the stack (services, their children, the cluster)."""
        procs = [s.proc for s in self.services.values()] + [self.sim.process if self.sim else None]
        found: list[psutil.Process] = []
        for proc in procs:
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(psutil.Error):
                parent = psutil.Process(proc.pid)
                found += [parent, *parent.children(recursive=True)]
        return found

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

    def wait_healthy(self, timeout: float = 180.0, components: Iterable[str] | None = None) -> None:
        """Until the health endpoint reports `components` healthy (and the triggerer's heartbeat is
        from its latest start); fails at once when a service exits."""
        wanted = tuple(components or ("metadatabase", "scheduler", "triggerer", "dag_processor"))

        def healthy() -> bool:
            for service in self.services.values():
                if service.proc is not None and service.proc.poll() is not None:
                    raise StackError(f"{service.name} exited with {service.proc.returncode}")
            try:
                body = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return False
            for name in wanted:
                part = body.get(name) or {}
                if part.get("status") != "healthy":
                    return False
                if name == "triggerer" and "triggerer" in self.started_at:
                    beat = part.get("latest_triggerer_heartbeat")
                    if not beat or epoch(beat) < self.started_at["triggerer"]:
                        return False
            return True

        wait_until(healthy, timeout=timeout, what=f"healthy {', '.join(wanted)}", first=0.5)

    # -- metadata DB (read-only) ---------------------------------------------------------------
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
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

    # -- diagnostics ---------------------------------------------------------------------------
    def tails(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.service_logs.glob("*.log")):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"----- {path.name} (last {len(text)} lines) -----\n" + "\n".join(text))
        return "\n".join(out)
