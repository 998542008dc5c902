"""Runs each compat DAG under real Airflow: official operator, then the import switched, then
(on the embedded cluster by default) the switched DAG again with `[kpo_async] end_from_trigger`
switched on deployment-wide.

One cluster serves every run (the embedded one, or the real control plane with a real node:
tests/compat/cluster.py); one migrated Airflow DB is copied into one Airflow home per variant,
so all runs have the same dag ids and logical date. Several `airflow dags test` processes run
side by side; pods are told apart by their `dag_id` label and the operator's own identity label,
and the two kpo-async runs of one DAG (same labels) never run at the same time: each takes the
pods whose creation the recorder saw while it ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.airflow.services import AIRFLOW_BIN, AirflowServices, stop_process_group
from tests.compat.cluster import TARGET, PodRecorder, real_cluster_dir, real_cluster_problem, seed

COMPAT_DAGS = Path(__file__).with_name("dags")
LOGICAL_DATE = "2026-03-04"
OFFICIAL_IMPORT = "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator"
SWITCHED_IMPORT = "from kpo_async import AsyncKubernetesPodOperator as KubernetesPodOperator"
#: The third run: the switched DAGs with `end_from_trigger` on for every task, as a user switching
#: it on in airflow.cfg without editing a DAG (docs/compat.md, "The third run").
END_FROM_TRIGGER_VARIANT = "kpo_async_eft"
VARIANTS = ("official", "kpo_async", END_FROM_TRIGGER_VARIANT)
#: The runs compared with the official one.
OURS = ("kpo_async", END_FROM_TRIGGER_VARIANT)
#: What each variant adds to the environment (the kpo_async run says False, whatever the caller's).
VARIANT_ENV = {
    "kpo_async": {"AIRFLOW__KPO_ASYNC__END_FROM_TRIGGER": "False"},
    END_FROM_TRIGGER_VARIANT: {"AIRFLOW__KPO_ASYNC__END_FROM_TRIGGER": "True"},
}
#: How each operator labels its pods (docs/migration.md, "Identity labels").
IDENTITY_LABEL = {
    "official": "kubernetes_pod_operator",
    "kpo_async": "kpo-async.io/managed",
    END_FROM_TRIGGER_VARIANT: "kpo-async.io/managed",
}


def variants() -> tuple[str, ...]:
    """The variants this session runs. KPO_ASYNC_COMPAT_END_FROM_TRIGGER=1 or 0 runs the third
    (end_from_trigger) or not; by default it runs on the embedded cluster only, as `make
    compat-node` on the real node would take half as long again for a run the embedded cluster
    already makes (under `airflow dags test` the setting changes no pod)."""
    default = "0" if TARGET == "real" else "1"
    third = os.environ.get("KPO_ASYNC_COMPAT_END_FROM_TRIGGER", default) == "1"
    return VARIANTS if third else VARIANTS[:2]


@dataclass
class DagRun:
    """What one `airflow dags test` left behind."""

    variant: str
    dag_id: str
    returncode: int
    seconds: float
    output: str
    #: When it started and when its end was seen (time.monotonic()).
    window: tuple[float, float] = (0.0, 0.0)
    states: dict[str, str | None] = field(default_factory=dict)
    xcoms: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    callbacks: list[str] = field(default_factory=list)

    def task_output(self, task_id: str) -> str:
        """The part of the output that belongs to one task (`dags test` runs them one by one)."""
        blocks = self.output.split("[DAG TEST] starting task_id=")[1:]
        return "\n".join(b for b in blocks if re.match(rf"{re.escape(task_id)}\b", b))


#: What a migrating user changes in a DAG file: the operator import, or the decorators' names.
SWITCHES = (
    (OFFICIAL_IMPORT, SWITCHED_IMPORT),
    ("@task.kubernetes_cmd(", "@task.kpo_async_cmd("),
    ("@task.kubernetes(", "@task.kpo_async("),
)


def switched_source(source: str) -> str:
    """The DAG file with only the operator import (or the decorators' names) changed."""
    assert source.count(OFFICIAL_IMPORT) <= 1, "a compat DAG imports the official operator once"
    switched = source
    for official, ours in SWITCHES:
        switched = switched.replace(official, ours)
    assert switched != source, "a compat DAG uses the official operator or its decorators"
    return switched


class CompatHarness:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.services = AirflowServices(workdir)
        self.services.service_logs.mkdir(parents=True, exist_ok=True)
        self.real = TARGET == "real"
        if self.real:  # the connection names the real control plane (admin credentials)
            self.services.kubeconfig = real_cluster_dir() / "admin.kubeconfig"
        else:
            self.services.start_sim()
        self.kubeconfig = self.services.kubeconfig
        self.variants = variants()
        self.homes = {v: workdir / f"home-{v}" for v in self.variants}
        self.callback_logs = {v: workdir / f"callbacks-{v}.log" for v in self.variants}
        try:
            self._setup()
        except BaseException:
            self.services.stop()
            raise

    # -- setup ---------------------------------------------------------------------------------
    def _setup(self) -> None:
        base_env = self.services.airflow_env()
        template = self.workdir / "home-template"
        template.mkdir()
        env = {**base_env, "AIRFLOW_HOME": str(template)}
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{template / 'airflow.db'}"
        migrated = subprocess.run(
            [AIRFLOW_BIN, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
        self.template_db = template / "airflow.db"
        self.envs: dict[str, dict[str, str]] = {}
        for variant, home in self.homes.items():
            dags = home / "dags"
            dags.mkdir(parents=True)
            for path in COMPAT_DAGS.iterdir():
                if path.suffix == ".py":
                    text = path.read_text()
                    (dags / path.name).write_text(text if variant == "official" else switched_source(text))
                elif path.is_file():
                    shutil.copy(path, dags / path.name)
            self.envs[variant] = {
                **base_env,
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
                "COMPAT_CALLBACK_LOG": str(self.callback_logs[variant]),
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
                **VARIANT_ENV.get(variant, {}),
            }
            # The official deferrable path reads $KUBECONFIG when set; the connection names the cluster.
            self.envs[variant].pop("KUBECONFIG", None)
        asyncio.run(seed(self.kubeconfig, real=self.real))

    # -- runs ----------------------------------------------------------------------------------
    def run_all(self, dag_ids: list[str], parallel: int = 4) -> dict[str, dict[str, DagRun]]:
        """Every DAG in every variant, `parallel` `airflow dags test` processes at a time, never two
        whose pods carry the same labels (one DAG's two kpo-async runs); returns {dag_id: {variant:
        DagRun}}."""
        recorder = PodRecorder(self.kubeconfig)
        recorder.start()
        pending = [(dag_id, variant) for dag_id in dag_ids for variant in self.variants]
        running: dict[tuple[str, str], tuple[subprocess.Popen, float, Path]] = {}
        runs: dict[str, dict[str, DagRun]] = {dag_id: {} for dag_id in dag_ids}
        try:
            self._drive(pending, running, runs, parallel)
        finally:
            for proc, _, _ in running.values():
                stop_process_group(proc, grace=5)
            pods = list(zip(recorder.received, recorder.stop(), strict=True))
        taken: set[str] = set()
        for by_variant in runs.values():
            for run in by_variant.values():
                self._collect(run, pods)
                taken.update(p["metadata"]["uid"] for pl in run.pods.values() for p in pl)
        stray = [
            p["metadata"]["name"]
            for _, p in pods
            if (p["metadata"].get("labels") or {}).get("dag_id") in runs and p["metadata"]["uid"] not in taken
        ]
        assert not stray, f"pods created outside the run of their DAG they belong to: {stray}"
        return runs

    def _start(self, dag_id: str, variant: str) -> tuple[subprocess.Popen, float, Path]:
        out = self.services.service_logs / f"dags-test-{dag_id}-{variant}.log"
        # One DB per run: concurrent `dags test` processes on one SQLite file collide.
        db = self.db_path(variant, dag_id)
        shutil.copy(self.template_db, db)
        env = {**self.envs[variant], "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db}"}
        cmd = [AIRFLOW_BIN, "dags", "test", dag_id, LOGICAL_DATE, "-f", str(self.dag_file(variant, dag_id))]
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=open(out, "w"),
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        return proc, time.monotonic(), out

    def _drive(
        self,
        pending: list[tuple[str, str]],
        running: dict[tuple[str, str], tuple[subprocess.Popen, float, Path]],
        runs: dict[str, dict[str, DagRun]],
        parallel: int,
    ) -> None:
        deadline = time.monotonic() + 1800
        while pending or running:
            while len(running) < parallel and (key := self._next(pending, running)):
                pending.remove(key)
                running[key] = self._start(*key)
            for key, (proc, started, out) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[key]
                dag_id, variant = key
                ended = time.monotonic()
                runs[dag_id][variant] = DagRun(
                    variant, dag_id, proc.returncode, ended - started, out.read_text(), (started, ended)
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"airflow dags test still running after 30 min: {sorted(running)}")
            time.sleep(0.5)

    @staticmethod
    def _next(pending: list[tuple[str, str]], running: dict[tuple[str, str], Any]) -> tuple[str, str] | None:
        """The first pending run whose pods no running one shares (same DAG, same identity label)."""
        return next(
            (
                (dag_id, variant)
                for dag_id, variant in pending
                if not any(d == dag_id and IDENTITY_LABEL[v] == IDENTITY_LABEL[variant] for d, v in running)
            ),
            None,
        )

    def _collect(self, run: DagRun, pods: list[tuple[float, dict[str, Any]]]) -> None:
        with sqlite3.connect(f"file:{self.db_path(run.variant, run.dag_id)}?mode=ro", uri=True) as db:
            run.states = dict(
                db.execute(
                    "SELECT task_id, state FROM task_instance WHERE dag_id=?", (run.dag_id,)
                ).fetchall()
            )
            for task_id, key, value in db.execute(
                "SELECT task_id, key, value FROM xcom WHERE dag_id=?", (run.dag_id,)
            ).fetchall():
                # SQLite hands a JSON number back as a number, the rest as JSON text
                run.xcoms.setdefault(task_id, {})[key] = (
                    json.loads(value) if isinstance(value, str) else value
                )
        started, ended = run.window
        for received, pod in pods:
            labels = pod["metadata"].get("labels") or {}
            mine = labels.get("dag_id") == run.dag_id and IDENTITY_LABEL[run.variant] in labels
            if mine and started <= received <= ended:
                run.pods.setdefault(labels.get("task_id", "?"), []).append(pod)
        log = self.callback_logs[run.variant]
        if log.exists():  # one DAG uses callbacks; every run of this variant sees the file
            run.callbacks = log.read_text().splitlines()

    def db_path(self, variant: str, dag_id: str) -> Path:
        return self.homes[variant] / f"{dag_id}.db"

    def dag_file(self, variant: str, dag_id: str) -> Path:
        return self.homes[variant] / "dags" / f"{dag_id}.py"

    def close(self) -> None:
        self.services.stop()


def environment_ok() -> str | None:
    """Why the compat suite cannot run here (the official provider missing), or None."""
    try:
        import airflow.providers.cncf.kubernetes  # noqa: F401
    except ImportError:
        return "the official provider is not installed (install the .[bench] extra)"
    if not os.path.exists(AIRFLOW_BIN):
        return "no airflow executable next to this Python"
    if TARGET == "real":
        return real_cluster_problem()
    return None
