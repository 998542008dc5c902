"""A throw-away Airflow installation for benchmarks and soaks that run real ``airflow triggerer`` processes.

`BenchAirflow` owns an AIRFLOW_HOME (SQLite, or PostgreSQL started by ``tools/postgres.sh``), the
bench DAG (`deferrals.dag_source`), any number of triggerer processes (each its own process group),
and reads back what they did: task instance states and events (SQL, read-only), and every trigger
log file the triggerers wrote (JSON lines, one per log call).
"""

from __future__ import annotations

import base64
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from kpo_async.testing.bench.deferrals import BENCH_DAG_ID, dag_source
from kpo_async.testing.postgres import query_postgres, start_postgres, stop_postgres
from kpo_async.testing.procs import epoch, free_port, inherited_env

REPO = Path(__file__).resolve().parents[3]
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))
_LINE = re.compile(r"^\[base\] line (\d+)$")


@dataclass
class Triggerer:
    name: str
    proc: subprocess.Popen
    log_path: Path
    started: float = field(default_factory=time.time)

    def tree(self) -> list[psutil.Process]:
        """The triggerer's supervisor and every descendant (the trigger runner, the log server)."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_by_pid(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                out[proc.pid] = times.user + times.system
        return out

    def roles(self) -> dict[int, str]:
        """What each process of the tree is: Airflow's supervisor (the root, with the database
        loop), the trigger runner (the event loop) or the log server."""
        out: dict[int, str] = {}
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                if proc.pid == self.proc.pid:
                    out[proc.pid] = "supervisor"
                else:
                    out[proc.pid] = (
                        "log server" if "serve-logs" in " ".join(proc.cmdline()) else "trigger runner"
                    )
        return out

    def rss_by_pid(self) -> dict[int, int]:
        """Resident KiB of each process of the tree."""
        out: dict[int, int] = {}
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                out[proc.pid] = proc.memory_info().rss // 1024
        return out

    def alive(self) -> bool:
        return self.proc.poll() is None


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two `cpu_by_pid` samples; a process born in between counts from zero."""
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


@dataclass
class TriggerLog:
    """What one trigger log file holds: pod lines (number -> times written), the event's time."""

    path: Path
    triggerer_id: str
    lines: list[tuple[int, float]] = field(default_factory=list)
    #: Log records that carried pod lines (fewer than the lines when records were batched).
    records: int = 0
    fired_at: float | None = None
    other: list[str] = field(default_factory=list)


def read_trigger_log(path: Path) -> TriggerLog:
    log = TriggerLog(path, path.name.rsplit(".trigger.", 1)[1].removesuffix(".log"))
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            event = str(entry.get("event", ""))
            stamp = entry.get("timestamp")
            at = epoch(stamp) if isinstance(stamp, str) else 0.0
            # A record carries one line, or several when the triggerer was past its record budget.
            numbers = [int(m.group(1)) for part in event.split("\n") if (m := _LINE.match(part))]
            if numbers:
                log.records += 1
                log.lines.extend((number, at) for number in numbers)
            elif event == "Trigger fired event":
                log.fired_at = at if log.fired_at is None else min(log.fired_at, at)
            else:
                log.other.append(event)
    return log


class BenchAirflow:
    """AIRFLOW_HOME + metadata DB + bench DAG + triggerers, all under `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        counts: dict[str, int],
        kubeconfig: str,
        database: str = "sqlite",
        capacity: int = 1000,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.home = self.workdir / "airflow"
        self.dags = self.workdir / "dags"
        self.logs = self.workdir / "logs"
        self.task_logs = self.home / "logs"
        self.counts = counts
        self.kubeconfig = kubeconfig
        self.database = database
        self.capacity = capacity
        self.extra_env = extra_env or {}
        self.pg_dir = self.workdir / "pg" / "data"
        self.sql_url = ""
        self.env: dict[str, str] = {}
        self.triggerers: list[Triggerer] = []

    # -- setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        for path in (self.home, self.dags, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        (self.dags / f"{BENCH_DAG_ID}.py").write_text(dag_source(self.counts))
        if self.database == "postgres":
            self.sql_url = start_postgres(self.pg_dir)
        else:
            self.sql_url = f"sqlite:///{self.home / 'airflow.db'}"
        self.env = self._env()
        self.airflow("db", "migrate", timeout=600)
        self.airflow("dags", "reserialize", timeout=300)

    def _env(self) -> dict[str, str]:
        env = inherited_env()  # forwards our settings, e.g. AIRFLOW__KPO_ASYNC__MAX_LOG_STREAMS
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                # Parsing imports the providers: a loaded machine needs more than the default 30 s.
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
                # Trigger kwargs are stored as a worker's deferral stores them; a real key anyway.
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_url,
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.task_logs),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__TRIGGERER__CAPACITY": str(self.capacity),
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW__SCHEDULER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
                    {"conn_type": "kubernetes", "extra": {"kube_config_path": self.kubeconfig}}
                ),
                "KUBECONFIG": str(self.workdir / "no-default-kubeconfig"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            }
        )
        env.update(self.extra_env)
        return env

    def airflow(self, *args: str, timeout: float = 120) -> str:
        name = "-".join(args[:2])
        with open(self.logs / f"{name}.log", "w") as out:
            done = subprocess.run(
                [AIRFLOW_BIN, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
        if done.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed: {(self.logs / f'{name}.log').read_text()[-3000:]}"
            )
        return (self.logs / f"{name}.log").read_text()

    def deferrals(self, command: str, config: dict[str, Any]) -> dict[str, Any]:
        """Run a `deferrals` command now (its imports take seconds: see `deferrals_later`)."""
        return self.deferrals_later(command)(config)

    def deferrals_later(self, command: str) -> Any:
        """Start a `deferrals` command ahead of time; call the result with its config to run it."""
        self._serial = getattr(self, "_serial", 0) + 1
        path = self.workdir / f"deferrals-{command}-{self._serial}.json"
        out = open(self.logs / f"deferrals-{command}-{self._serial}.out", "w+")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kpo_async.testing.bench.deferrals", command, str(path)],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )

        def go(config: dict[str, Any]) -> dict[str, Any]:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(config))
            tmp.rename(path)
            rc = proc.wait(900)
            out.seek(0)
            text = out.read()
            out.close()
            if rc != 0:
                raise RuntimeError(f"deferrals {command} failed: {text[-3000:]}")
            return json.loads(text.strip().splitlines()[-1])

        return go

    # -- triggerers ----------------------------------------------------------------------------
    def start_triggerer(self, name: str = "triggerer") -> Triggerer:
        log_path = self.logs / f"{name}.log"
        with open(log_path, "a") as log:
            log.write(f"\n===== start at {time.strftime('%H:%M:%S')} =====\n")
            log.flush()
            proc = subprocess.Popen(
                [AIRFLOW_BIN, "triggerer"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.workdir,
            )
        triggerer = Triggerer(name, proc, log_path)
        self.triggerers.append(triggerer)
        return triggerer

    def stop_triggerer(self, triggerer: Triggerer, sig: int = signal.SIGTERM, timeout: float = 60) -> float:
        """SIGTERM to the supervisor (a graceful stop) or SIGKILL to the whole group (a crash)."""
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:
                os.killpg(triggerer.proc.pid, signal.SIGKILL)
            else:
                triggerer.proc.send_signal(sig)
        try:
            triggerer.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(triggerer.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            triggerer.proc.wait(10)
        return time.monotonic() - started

    def stop(self) -> None:
        for triggerer in self.triggerers:
            if triggerer.alive():
                self.stop_triggerer(triggerer, timeout=30)
        if self.database == "postgres" and self.pg_dir.exists():
            stop_postgres(self.pg_dir)

    # -- reading back --------------------------------------------------------------------------
    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read-only SQL (``?`` placeholders) against the metadata DB."""
        if self.database == "postgres":
            return query_postgres(self.sql_url, sql, params)
        import sqlite3

        uri = f"file:{self.home / 'airflow.db'}?mode=ro"
        for attempt in range(10):
            try:
                with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
                    return db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 9:
                    raise
                time.sleep(0.5)
        return []

    def task_states(self, run_id: str) -> dict[tuple[str, int], tuple[str, Any]]:
        """(task_id, map_index) -> (state, the event payload or None)."""
        out: dict[tuple[str, int], tuple[str, Any]] = {}
        rows = self.query(
            "SELECT task_id, map_index, state, next_kwargs FROM task_instance WHERE dag_id=? AND run_id=?",
            (BENCH_DAG_ID, run_id),
        )
        for task_id, index, state, next_kwargs in rows:
            kwargs = json.loads(next_kwargs) if isinstance(next_kwargs, str) else next_kwargs
            out[(task_id, index)] = (state, _event_payload(kwargs))
        return out

    def events_recorded_at(self, run_id: str) -> dict[tuple[str, int], float]:
        """(task_id, map_index) -> when the triggerer recorded the task's event (epoch seconds):
        the task instance's last update, as nothing else touches it after its event here."""
        rows = self.query(
            "SELECT task_id, map_index, updated_at FROM task_instance "
            "WHERE dag_id=? AND run_id=? AND state='scheduled'",
            (BENCH_DAG_ID, run_id),
        )
        out: dict[tuple[str, int], float] = {}
        for task_id, index, updated in rows:
            if isinstance(updated, str):
                updated = epoch(updated)
            elif updated is not None:
                updated = updated.timestamp()
            if updated is not None:
                out[(task_id, index)] = float(updated)
        return out

    def trigger_logs(self, run_id: str, task_id: str) -> dict[int, list[TriggerLog]]:
        """map_index -> the trigger log files of that task instance (one per triggerer that ran it)."""
        folder = self.task_logs / f"dag_id={BENCH_DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
        out: dict[int, list[TriggerLog]] = {}
        for path in glob.glob(str(folder / "map_index=*" / "attempt=*.log.trigger.*.log")):
            index = int(Path(path).parent.name.split("=", 1)[1])
            out.setdefault(index, []).append(read_trigger_log(Path(path)))
        return out

    def probe_samples(self, run_id: str) -> list[tuple[float, list[float]]]:
        """(report time, lag samples in ms) from the probe's trigger log files."""
        folder = self.task_logs / f"dag_id={BENCH_DAG_ID}" / f"run_id={run_id}" / "task_id=probe"
        out: list[tuple[float, list[float]]] = []
        for path in glob.glob(str(folder / "attempt=*.log.trigger.*.log")):
            for event in read_trigger_log(Path(path)).other:
                parts = event.split()
                if len(parts) >= 2 and parts[0] == "kpo-bench-lag-ms" and parts[1] != "preloaded":
                    out.append((float(parts[1]), [float(x) for x in parts[2:]]))
        return sorted(out)

    def cleanup(self, keep: bool) -> None:
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _event_payload(next_kwargs: Any) -> Any:
    """The TriggerEvent payload out of a resumed task instance's next_kwargs (serde-encoded)."""
    if not isinstance(next_kwargs, dict):
        return None
    event = next_kwargs.get(
        "event", next_kwargs.get("__var", {}).get("event") if "__var" in next_kwargs else None
    )
    if event is None:
        return None
    with contextlib.suppress(Exception):
        from airflow.sdk.serde import deserialize

        return deserialize(event)
    return event
