"""kpo-async under real Airflow 3 services: api-server, scheduler (LocalExecutor), dag-processor and
triggerer as separate processes, against the embedded cluster, driven over the REST API.

Unlike `dags test`, here a deferred task really leaves its worker: the trigger is stored in the
metadata DB, re-created by the triggerer from `serialize()`, and its event resumes the task in a
new worker process. One set of services serves the whole module (starting them takes ~40 s).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import airflow
import pytest
import yaml
from packaging.version import Version

from kpo_async.airflow_compat import triggerer_calls_on_kill
from kpo_async.testing import logcapture
from tests.airflow import end_from_trigger_cases
from tests.airflow.services import (
    EXAMPLE_DAGS,
    TEST_DAGS,
    AirflowServices,
    ServiceError,
    wait_until,
)

pytestmark = [pytest.mark.airflow, pytest.mark.services]

#: Planted secrets: the cluster's bearer token (only in the sim's kubeconfig file and in the inline
#: kube_config of connection k8s_inline) and a Variable with a sensitive name given to a pod.
PLANTED_TOKEN = f"kpoPlantedBearer{uuid.uuid4().hex}"
PLANTED_VARIABLE = f"kpoPlantedVariable{uuid.uuid4().hex}"
#: A secret the pod itself prints (test_a_pod_printing_its_secret_is_masked_in_the_task_log).
ECHOED_SECRET = f"kpoEchoedSecret{uuid.uuid4().hex}"

#: Airflow 3.0.x (the lowest supported), where a triggerer's SIGTERM skips the triggers' cleanup.
_AIRFLOW_3_0 = Version(airflow.__version__).release[:2] == (3, 0)

POD_LINE = re.compile(r"^line (\d+)$")
DAG_IDS = (
    "example_kpo_async_xcom_etl",
    "kpo_test_relaunch",
    "kpo_test_lines",
    "kpo_test_deadline",
    "kpo_test_timeout",
    "kpo_test_user_kill",
    "kpo_test_clear",
    "kpo_test_worker_kill",
    "kpo_test_secrets",
    "kpo_test_startup",
    "kpo_test_secret_echo",
)


def _inline_connection(harness: AirflowServices) -> dict[str, Any]:
    kubeconfig = yaml.safe_load(harness.kubeconfig.read_text())
    return {"conn_type": "kubernetes", "extra": {"kube_config": json.dumps(kubeconfig)}}


@pytest.fixture(scope="module")
def services(workdir: Path) -> Iterator[AirflowServices]:
    markers = workdir / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    harness = AirflowServices(
        workdir,
        dag_files=[
            EXAMPLE_DAGS / "xcom_etl.py",
            TEST_DAGS / "kpo_test_services.py",
            end_from_trigger_cases.DAG_FILE,
        ],
        sim_token=PLANTED_TOKEN,
        connections={"k8s_inline": _inline_connection},
        variables={"kpo_api_secret": PLANTED_VARIABLE, "kpo_echo_secret": ECHOED_SECRET},
        extra_env={"KPO_TEST_MARKERS": str(markers)},
        # KPO_ASYNC_TEST_DATABASE=postgres: a private PostgreSQL (tools/postgres.sh), as production
        # runs. SQLite by default until the PostgreSQL run is green in CI (its migration is slower).
        database=os.environ.get("KPO_ASYNC_TEST_DATABASE", "sqlite"),
    )
    started = time.monotonic()
    with harness:
        harness.wait_for_dags((*DAG_IDS, *end_from_trigger_cases.DAG_IDS))
        print(f"\nAirflow services healthy and DAGs parsed in {time.monotonic() - started:.1f}s")
        yield harness


# -- helpers -----------------------------------------------------------------------------------
def wait_deferred(services: AirflowServices, dag_id: str, run_id: str, task_id: str) -> float:
    """Wait for the task to be deferred (observed over REST); the monotonic time it was seen."""
    seen: list[str] = []
    ti = services.wait_task(
        dag_id, run_id, task_id, states=("deferred", "success", "failed"), timeout=180, poll=0.25, seen=seen
    )
    assert ti["state"] == "deferred", f"{task_id} never seen deferred; states seen: {seen}"
    return time.monotonic()


def pod_of(services: AirflowServices, dag_id: str, run_id: str, task_id: str) -> dict[str, str]:
    """The pod the task created: the operator pushes it as XCom before deferring (``pod_name`` and
    ``pod_namespace`` as the official operator does; older kpo-async: one ``pod`` dict)."""
    try:
        return {
            "name": services.xcom(dag_id, run_id, task_id, key="pod_name"),
            "namespace": services.xcom(dag_id, run_id, task_id, key="pod_namespace"),
        }
    except ServiceError:
        return services.xcom(dag_id, run_id, task_id, key="pod")


def pod_exists(services: AirflowServices, namespace: str, name: str) -> bool:
    return any(p["metadata"]["name"] == name for p in services.list_pods(namespace, include_deleting=True))


def numbered(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := POD_LINE.match(line))]


def trigger_log_files(services: AirflowServices, dag_id: str, run_id: str, task_id: str) -> list[Path]:
    folder = services.task_logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return sorted(folder.glob("attempt=*.log.trigger.*.log"))


def lines_in_file(path: Path) -> list[int]:
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            event = str(json.loads(raw).get("event", ""))
        except ValueError:
            event = raw
        out.extend(numbered(logcapture.pod_lines([event])))
    return out


def wait_pod_lines(services: AirflowServices, dag_id: str, run_id: str, task_id: str, at_least: int) -> int:
    def enough() -> int:
        count = len(numbered(services.task_log(dag_id, run_id, task_id).pod_lines()))
        return count if count >= at_least else 0

    return wait_until(enough, timeout=90, what=f"{at_least} pod lines in {task_id}'s log", first=1, most=2)


class PodRecorder:
    """Records every pod (name, labels) matching a selector, polling in the background."""

    def __init__(self, services: AirflowServices, selector: str, namespace: str = "default") -> None:
        self.services, self.selector, self.namespace = services, selector, namespace
        self.seen: dict[str, dict[str, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PodRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def poll(self) -> None:
        for pod in self.services.list_pods(self.namespace, self.selector, include_deleting=True):
            self.seen.setdefault(pod["metadata"]["name"], pod["metadata"]["labels"])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # keep recording; report at the end
                print(f"pod recorder: {exc}")
            self._stop.wait(0.5)


# -- a. the XCom ETL DAG across processes ---------------------------------------------------------
def test_xcom_etl_defers_to_the_triggerer_and_resumes_on_a_worker(services: AirflowServices) -> None:
    dag_id = "example_kpo_async_xcom_etl"
    run_id = services.trigger_dag(dag_id)
    seen: list[str] = []
    services.wait_task(dag_id, run_id, "transform", timeout=180, poll=0.25, seen=seen)
    run = services.wait_run(dag_id, run_id)
    assert run["state"] == "success", services.task_log(dag_id, run_id, "transform").text
    # Deferred, then scheduled again and resumed on a worker.
    assert "deferred" in seen, seen
    assert seen.index("deferred") < len(seen) - 1 and seen[-1] == "success", seen

    extracted = services.xcom(dag_id, run_id, "extract_data")
    assert services.xcom(dag_id, run_id, "transform") == {"return_value": str(23 * extracted)}
    # load_data returns the string; the REST API's deserialization may hand it back as a number.
    assert str(services.xcom(dag_id, run_id, "load_data")) == str(23 * extracted)

    log = services.task_log(dag_id, run_id, "transform")
    events = log.events()
    assert f"[base] multiplying {extracted} by 23" in events, log.text
    # Worker (submit) -> triggerer (pod's log) -> worker (finalize), in that order.
    created = next(i for i, e in enumerate(events) if e.startswith("created pod default/transform-"))
    deferred = next(i for i, e in enumerate(events) if e.startswith("Pausing task as DEFERRED"))
    streamed = events.index(f"[base] multiplying {extracted} by 23")
    finished = next(
        i for i, e in enumerate(events) if re.fullmatch(r"pod default/transform-\w+ succeeded", e)
    )
    assert created < deferred < streamed < finished, log.text
    # The pod's line was written by the triggerer, into the task's trigger log file.
    files = trigger_log_files(services, dag_id, run_id, "transform")
    assert len(files) == 1, files
    assert "[base] multiplying" in files[0].read_text()
    assert services.trigger_rows(dag_id, run_id, "transform") == []
    assert services.list_pods("default", "task_id=transform") == []


# -- b. triggerer restart mid-run ---------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_triggerer_restart_mid_run_loses_no_line_and_keeps_deadlines(
    services: AirflowServices, sig: signal.Signals
) -> None:
    dag_id, task_id = "kpo_test_lines", "lines"
    duration, rate = 25, 5
    total = duration * rate
    run_id = services.trigger_dag(dag_id, conf={"duration": duration, "rate": rate})
    # The deadline check rides along with the SIGTERM variant: one restart serves both.
    deadline_run = services.trigger_dag("kpo_test_deadline") if sig == signal.SIGTERM else None
    # ... and the startup deadline with the SIGKILL variant.
    startup_run = services.trigger_dag("kpo_test_startup") if sig == signal.SIGKILL else None

    wait_deferred(services, dag_id, run_id, task_id)
    deadline_deferred = (
        wait_deferred(services, "kpo_test_deadline", deadline_run, "slow") if deadline_run else 0
    )
    startup_deferred = (
        wait_deferred(services, "kpo_test_startup", startup_run, "never_starts") if startup_run else 0
    )
    before = wait_pod_lines(services, dag_id, run_id, task_id, at_least=15)
    took = services.restart_triggerer(sig)
    restarted = time.monotonic()
    print(f"\n{sig.name}: {before} lines delivered before the kill; triggerer stopped in {took:.1f}s")

    ti = services.wait_task(dag_id, run_id, task_id, timeout=180)
    log = services.task_log(dag_id, run_id, task_id)
    assert ti["state"] == "success", log.text
    assert ti["try_number"] == 1, "the task must not have been retried"
    assert services.xcom(dag_id, run_id, task_id) == {"lines": total, "run": run_id}

    numbers = numbered(log.pod_lines())
    counts = collections.Counter(numbers)
    missing = sorted(set(range(1, total + 1)) - set(counts))
    duplicated = {n: c for n, c in sorted(counts.items()) if c > 1}
    files = trigger_log_files(services, dag_id, run_id, task_id)
    per_file = {f.name.rsplit(".trigger.", 1)[1]: lines_in_file(f) for f in files}
    summary = (
        f"{sig.name}: {len(numbers)} pod lines served for {total} printed; missing {missing}; "
        f"{sum(c - 1 for c in duplicated.values())} duplicates (lines {_ranges(duplicated)}); "
        f"per trigger log file (count, first, last): {_file_summary(per_file)}"
    )
    print(summary)
    assert len(files) == 2, f"expected one trigger log per triggerer, got {files}"
    assert not missing, summary
    assert set(counts) <= set(range(1, total + 1)), summary
    assert numbers == sorted(numbers) or duplicated, f"lines out of order: {summary}"
    if sig == signal.SIGTERM and not _AIRFLOW_3_0:
        # A graceful stop checkpoints the cursor on the pod: the successor resumes exactly after it.
        assert not duplicated, summary
    else:
        # Airflow 3.0's triggerer ends its trigger runner at a SIGTERM without running the
        # triggers' cleanup, so a 3.0 SIGTERM is a SIGKILL to the trigger.
        # No checkpoint survives a SIGKILL except the periodic one (every 60 s by default, so
        # none in a 25 s pod): the successor re-reads what was delivered before the kill, and
        # nothing after. Duplicates are bounded by what the dead triggerer had delivered.
        first_file_max = max(next(iter(per_file.values())), default=0)
        assert all(n <= first_file_max for n in duplicated), summary
    assert services.list_pods("default", f"task_id={task_id}") == []

    if deadline_run:
        dti = services.wait_task("kpo_test_deadline", deadline_run, "slow", timeout=180, poll=0.5)
        ended = time.monotonic()
        dlog = services.task_log("kpo_test_deadline", deadline_run, "slow")
        elapsed = ended - deadline_deferred
        print(
            f"deadline run: failed {elapsed:.1f}s after it was seen deferred (execution_timeout 45 s; "
            f"restart {restarted - deadline_deferred:.1f}s after deferral)"
        )
        assert dti["state"] == "failed", dlog.text
        assert "was still running when execution_timeout ran out" in dlog.raw_text, dlog.text
        assert "AirflowTaskTimeout" in dlog.raw_text, dlog.text
        # A deadline reset by the restart would end it no sooner than restart + 45 s.
        assert elapsed < 45 + 12, f"timed out {elapsed:.1f}s after deferral: the deadline was reset"
        assert elapsed > 45 - 8, f"timed out too early: {elapsed:.1f}s"
        assert restarted - deadline_deferred + 45 > elapsed + 3, "the restart came too late to prove it"
        assert services.list_pods("default", "task_id=slow", include_deleting=True) == []

    if startup_run:
        sti = services.wait_task("kpo_test_startup", startup_run, "never_starts", timeout=180, poll=0.5)
        elapsed = time.monotonic() - startup_deferred
        restart_done = restarted - startup_deferred
        slog = services.task_log("kpo_test_startup", startup_run, "never_starts")
        print(
            f"startup run: failed {elapsed:.1f}s after it was seen deferred (startup_timeout_seconds 40; "
            f"new triggerer healthy {restart_done:.1f}s after deferral)"
        )
        assert sti["state"] == "failed", slog.text
        # Never scheduled: the scheduling window (schedule_timeout_seconds, by default the startup
        # timeout, as in the official operator) is the deadline that ran out.
        assert "was not scheduled before schedule_timeout_seconds" in slog.raw_text, slog.text
        assert "FailedScheduling" in slog.raw_text, slog.text
        # A deadline reset by the new trigger would end it no sooner than restart_done + 40 s.
        assert 40 - 8 < elapsed < restart_done + 40 - 2, (elapsed, restart_done)
        assert services.list_pods("default", "task_id=never_starts", include_deleting=True) == []


def _file_summary(per_file: dict[str, list[int]]) -> dict[str, tuple]:
    return {k: (len(v), min(v, default=None), max(v, default=None)) for k, v in per_file.items()}


def _ranges(duplicated: dict[int, int]) -> str:
    if not duplicated:
        return "none"
    keys = sorted(duplicated)
    return f"{keys[0]}..{keys[-1]}" if keys == list(range(keys[0], keys[-1] + 1)) else str(keys)


# -- c. a user marks the deferred task failed / success -----------------------------------------
def test_marking_a_deferred_task_failed_or_success_deletes_the_pod_and_stops_the_trigger(
    services: AirflowServices,
) -> None:
    dag_id, task_id = "kpo_test_user_kill", "long"
    runs = {state: services.trigger_dag(dag_id) for state in ("failed", "success")}
    pods = {}
    for state, run_id in runs.items():
        wait_deferred(services, dag_id, run_id, task_id)
        pods[state] = pod_of(services, dag_id, run_id, task_id)
        assert services.triggers_mentioning(pods[state]["name"]), "no trigger row while deferred"
        wait_pod_lines(services, dag_id, run_id, task_id, at_least=2)  # the trigger is following it
    for state, run_id in runs.items():
        services.set_task_state(dag_id, run_id, task_id, state)

    for state, run_id in runs.items():
        pod = pods[state]
        wait_until(
            lambda pod=pod: not pod_exists(services, pod["namespace"], pod["name"]),
            timeout=60,
            what=f"pod {pod['name']} to be deleted after marking the task {state}",
        )
        wait_until(
            lambda pod=pod: not services.triggers_mentioning(pod["name"]),
            timeout=60,
            what=f"the trigger following {pod['name']} to be removed",
        )
        assert services.trigger_rows(dag_id, run_id, task_id) == []
        deleted = f"deleted pod {pod['namespace']}/{pod['name']} because the task was killed"
        # The trigger logs the delete after the API answered; its line reaches the log file
        # through the triggerer's supervisor, possibly after the pod and the trigger row are gone.
        wait_until(
            lambda run_id=run_id, deleted=deleted: (
                deleted in services.task_log(dag_id, run_id, task_id).events()
            ),
            timeout=30,
            what=f"the trigger's line {deleted!r} in the task log",
        )
        events = services.task_log(dag_id, run_id, task_id).events()
        if triggerer_calls_on_kill():
            # The triggerer cancelled the trigger because of the user's action and called on_kill.
            assert "Trigger cancelled by user action, invoking on_kill" in events, events
        else:
            # Airflow < 3.3 only cancels the trigger: it asked for the task's state and killed.
            assert f"the trigger was cancelled and its task is now {state}: killing the pod" in events, events
    time.sleep(3)  # the state the user chose sticks: no event resumes the task afterwards
    for state, run_id in runs.items():
        ti = services.task_instance(dag_id, run_id, task_id)
        assert ti["state"] == state, ti
        assert not any(
            e.startswith("pod default/") and e.endswith(" succeeded")
            for e in services.task_log(dag_id, run_id, task_id).events()
        )


# -- c1b. the cluster takes the pod away: relaunched across processes, then marked failed ---------------
def evict_when_initializing(services: AirflowServices, namespace: str, name: str) -> None:
    """The kubelet evicts the pod while its init container runs (its base container never started)."""
    from kpo_async.testing.sim.control import SimControl

    def initializing() -> bool:
        found = [p for p in services.list_pods(namespace) if p["metadata"]["name"] == name]
        statuses = (found[0]["status"].get("initContainerStatuses") or []) if found else []
        return any("running" in (s.get("state") or {}) for s in statuses)

    wait_until(initializing, timeout=60, what=f"pod {name}'s init container to run", first=0.2, most=0.5)

    async def evict() -> None:
        async with SimControl(str(services.kubeconfig)) as control:
            await control.evict(namespace, name, "The node was low on resource: memory.")

    asyncio.run(evict())


def test_a_taken_away_pod_is_relaunched_across_processes_and_the_replacement_is_killable(
    services: AirflowServices,
) -> None:
    """The triggerer reports the eviction, a worker creates `<pod>-r1` and defers again, the
    triggerer follows it: the try ends once, with the replacement's XCom and its log. A second run,
    marked failed while the replacement runs, deletes the replacement."""
    dag_id, task_id = "kpo_test_relaunch", "relaunched"
    finished, killed = services.trigger_dag(dag_id), services.trigger_dag(dag_id)
    firsts = {}
    for run_id in (finished, killed):
        wait_deferred(services, dag_id, run_id, task_id)
        firsts[run_id] = pod_of(services, dag_id, run_id, task_id)["name"]
    evictions = [
        threading.Thread(target=evict_when_initializing, args=(services, "default", name), daemon=True)
        for name in firsts.values()
    ]
    for thread in evictions:
        thread.start()
    for thread in evictions:
        thread.join(timeout=90)
    replacement = f"{firsts[killed]}-r1"
    wait_until(
        lambda: (
            pod_of(services, dag_id, killed, task_id)["name"] == replacement
            and services.task_instance(dag_id, killed, task_id)["state"] == "deferred"
            and bool(services.triggers_mentioning(replacement))
        ),
        timeout=90,
        what="the killed run's replacement pod to be deferred on",
    )
    wait_pod_lines(services, dag_id, killed, task_id, at_least=2)  # the triggerer follows the replacement
    services.set_task_state(dag_id, killed, task_id, "failed")
    ti = services.wait_task(dag_id, finished, task_id, states=("success", "failed"), timeout=180)
    assert ti["state"] == "success" and ti["try_number"] == 1, ti
    assert services.xcom(dag_id, finished, task_id) == {"relaunched": True}
    assert services.xcom(dag_id, finished, task_id, key="pod_name") == f"{firsts[finished]}-r1"
    log = services.task_log(dag_id, finished, task_id)
    events = log.events()
    said = (
        f"pod default/{firsts[finished]} was terminated by its node's kubelet (DisruptionTarget: "
        f"TerminationByKubelet): The node was low on resource: memory; relaunch 1 of 2 as pod "
        f"default/{firsts[finished]}-r1"
    )
    assert said in events, events
    assert numbered(log.pod_lines()) == list(range(1, 41)), log.pod_lines()
    assert any(
        e.startswith(f"pod default/{firsts[finished]}-r1 timeline: ") and "relaunches 1" in e for e in events
    )
    wait_until(
        lambda: not pod_exists(services, "default", replacement), timeout=60, what=f"{replacement} deleted"
    )
    assert services.task_instance(dag_id, killed, task_id)["state"] == "failed"
    assert services.list_pods("default", f"dag_id={dag_id}", include_deleting=True) == []
    for run_id in (finished, killed):
        assert services.trigger_rows(dag_id, run_id, task_id) == []


# -- c2. a user clears the deferred task -------------------------------------------------------------
def test_clearing_a_deferred_task_runs_it_again_without_orphaning_its_pod(services: AirflowServices) -> None:
    """The next try either adopts the first pod (when the scheduler requeued the task before the
    cancelled trigger asked for its state) or the cancelled trigger deleted it and the next try runs
    a new one; either way the task ends once, with its XCom, one pod per try and none left."""
    dag_id, task_id = "kpo_test_clear", "cleared"
    seen: list[str] = []
    with PodRecorder(services, f"dag_id={dag_id}") as recorder:
        run_id = services.trigger_dag(dag_id)
        wait_deferred(services, dag_id, run_id, task_id)
        first = pod_of(services, dag_id, run_id, task_id)
        wait_pod_lines(services, dag_id, run_id, task_id, at_least=3)
        services.api(
            "POST",
            f"/api/v2/dags/{dag_id}/clearTaskInstances",
            json={"dag_run_id": run_id, "task_ids": [task_id], "dry_run": False, "only_failed": False},
        )
        ti = services.wait_task(
            dag_id,
            run_id,
            task_id,
            states=("success", "failed"),
            timeout=180,
            poll=0.5,
            seen=seen,
        )
        recorder.poll()
    events = services.task_log(dag_id, run_id, task_id, try_number=2).events()
    print(f"\nstates after the clear: {seen}; pods: {recorder.seen}")
    assert ti["state"] == "success" and ti["try_number"] == 2, (ti, events)
    assert services.xcom(dag_id, run_id, task_id) == {"done": True}
    tries = collections.Counter(labels["try_number"] for labels in recorder.seen.values())
    assert all(count == 1 for count in tries.values()), f"two pods for one try: {recorder.seen}"
    if set(recorder.seen) == {first["name"]}:
        assert f"reattaching to pod default/{first['name']} (created by try 1)" in events, events
    else:
        assert not pod_exists(services, first["namespace"], first["name"])
        (second,) = set(recorder.seen) - {first["name"]}
        assert recorder.seen[second]["try_number"] == "2"
        assert f"created pod default/{second}" in events, events
    assert services.list_pods("default", f"dag_id={dag_id}", include_deleting=True) == []
    assert services.trigger_rows(dag_id, run_id, task_id) == []


# -- d. execution_timeout on a deferred task ----------------------------------------------------
def test_execution_timeout_of_a_deferred_task_deletes_the_pod_and_fails_the_task(
    services: AirflowServices,
) -> None:
    dag_id, task_id = "kpo_test_timeout", "times_out"
    run_id = services.trigger_dag(dag_id)
    deferred = wait_deferred(services, dag_id, run_id, task_id)
    pod = pod_of(services, dag_id, run_id, task_id)
    ti = services.wait_task(dag_id, run_id, task_id, timeout=120, poll=0.5)
    elapsed = time.monotonic() - deferred
    log = services.task_log(dag_id, run_id, task_id)
    print(f"\ntimed out {elapsed:.1f}s after it was seen deferred (execution_timeout 12 s)")
    assert ti["state"] == "failed", log.text
    assert 12 - 6 < elapsed < 12 + 25, elapsed
    events = log.events()
    assert "was still running when execution_timeout ran out" in log.raw_text, log.text
    assert "AirflowTaskTimeout" in log.raw_text, log.text
    assert f"deleted pod {pod['namespace']}/{pod['name']}" in events, log.text
    assert not pod_exists(services, pod["namespace"], pod["name"])
    assert services.trigger_rows(dag_id, run_id, task_id) == []


# -- e. the worker dies after creating the pod, before deferring --------------------------------
def test_worker_killed_after_submit_retry_adopts_or_replaces_the_pod(services: AirflowServices) -> None:
    dag_id = "kpo_test_worker_kill"
    markers = Path(services.env["KPO_TEST_MARKERS"])
    run_id = services.trigger_dag(dag_id)
    with PodRecorder(services, "dag_id=kpo_test_worker_kill") as recorder:
        killed: dict[str, dict[str, Any]] = {}
        for task_id in ("reattach", "no_reattach"):
            ti = wait_until(
                lambda task_id=task_id: (
                    (t := services.task_instance(dag_id, run_id, task_id))["state"] == "running" and t
                ),
                timeout=120,
                what=f"{task_id} running",
            )
            marker_path = markers / f"{dag_id}.{task_id}.{ti['id']}.json"
            marker = wait_until(
                lambda p=marker_path: p.exists() and json.loads(p.read_text()),
                timeout=90,
                what=f"{task_id} to submit its pod",
            )
            proc = services.find_task_process(ti["id"])
            assert proc is not None, f"no process titled 'airflow worker -- {ti['id']}'"
            assert proc.pid == marker["pid"], (proc.pid, marker)
            recorder.poll()
            assert marker["pod"] in recorder.seen
            proc.kill()  # SIGKILL: no on_kill, no cleanup, like an OOM kill
            killed[task_id] = marker
        run = services.wait_run(dag_id, run_id, timeout=240)
        recorder.poll()

    seen_pods = {name: (v["task_id"], v["try_number"]) for name, v in recorder.seen.items()}
    print(f"\npods seen (task, try): {seen_pods}")
    for task_id, marker in killed.items():
        log = services.task_log(dag_id, run_id, task_id, try_number=2)
        ti = services.task_instance(dag_id, run_id, task_id)
        assert ti["state"] == "success" and ti["try_number"] == 2, (ti, log.text)
        mine = {n: labels for n, labels in recorder.seen.items() if labels.get("task_id") == task_id}
        by_try = collections.Counter(labels["try_number"] for labels in mine.values())
        assert all(count == 1 for count in by_try.values()), f"two pods for one try: {mine}"
        assert services.xcom(dag_id, run_id, task_id) == {"reattach": task_id == "reattach"}
        if task_id == "reattach":
            assert list(mine) == [marker["pod"]], mine
            assert mine[marker["pod"]]["try_number"] == "1"
            assert f"reattaching to pod default/{marker['pod']} (created by try 1)" in log.events(), log.text
        else:
            assert set(mine) - {marker["pod"]}, f"no new pod for try 2: {mine}"
            (new,) = set(mine) - {marker["pod"]}
            assert mine[new]["try_number"] == "2"
            events = log.events()
            assert f"deleting pod default/{marker['pod']} left by an interrupted earlier try" in events, (
                log.text
            )
            assert f"created pod default/{new}" in events, log.text
        assert run["state"] == "success"
    assert services.list_pods("default", "dag_id=kpo_test_worker_kill", include_deleting=True) == []


# -- f. secrets ---------------------------------------------------------------------------------
def test_a_pod_printing_its_secret_is_masked_in_the_task_log(services: AirflowServices) -> None:
    """The pod prints a value that Airflow knows is secret (a Variable with a sensitive name).

    On a worker Airflow's secrets masker would hide it; here the line is logged by the trigger on
    the triggerer, which has never seen the Variable.
    """
    dag_id, task_id = "kpo_test_secret_echo", "echoes_secret"
    run_id = services.trigger_dag(dag_id)
    ti = services.wait_task(dag_id, run_id, task_id, timeout=120)
    log = services.task_log(dag_id, run_id, task_id)
    assert ti["state"] == "success", log.text
    printed = [line for line in log.pod_lines() if line.startswith("my api secret is ")]
    assert printed, log.text
    leaked = [str(p) for p in services.written_files() if ECHOED_SECRET.encode() in p.read_bytes()]
    assert printed == ["my api secret is ***"] and not leaked, (printed, leaked)


# -- f. secrets never written anywhere ----------------------------------------------------------
def test_planted_secrets_are_never_written(services: AirflowServices) -> None:
    dag_id, task_id = "kpo_test_secrets", "uses_secrets"
    run_id = services.trigger_dag(dag_id)
    wait_deferred(services, dag_id, run_id, task_id)
    rows = services.query(
        "SELECT t.classpath, t.kwargs FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
        "WHERE ti.dag_id=? AND ti.run_id=? AND ti.task_id=?",
        (dag_id, run_id, task_id),
    )
    ti = services.wait_task(dag_id, run_id, task_id, timeout=120)
    log = services.task_log(dag_id, run_id, task_id)
    assert ti["state"] == "success", log.text
    assert f"[base] api token has {len(PLANTED_VARIABLE)} chars" in log.events(), log.text
    assert services.xcom(dag_id, run_id, task_id) == {"ok": True}
    if rows:  # seen while deferred (the row is gone once the event fired)
        classpath, kwargs = rows[0]
        assert classpath == "triggers.pod.PodTrigger"
        # Stored in clear (no Fernet key in this home), so this check and the grep below see it all.
        assert pod_of(services, dag_id, run_id, task_id)["name"] in kwargs, kwargs
        assert "k8s_inline" in kwargs, kwargs
        assert PLANTED_TOKEN not in kwargs and PLANTED_VARIABLE not in kwargs

    # Everything every service wrote during this module: task and trigger logs, service logs,
    # the metadata DB (trigger kwargs, next_kwargs, rendered fields, XComs, even freed pages).
    # The sim's kubeconfig file is the credential itself (it is where the token lives).
    leaks, scanned = [], 0
    for path in services.written_files():
        if path == services.kubeconfig:
            continue
        scanned += 1
        data = path.read_bytes()
        for name, secret in (("bearer token", PLANTED_TOKEN), ("Variable value", PLANTED_VARIABLE)):
            if secret.encode() in data:
                index = data.index(secret.encode())
                context = data[max(0, index - 200) : index + 80].decode(errors="replace")
                leaks.append(f"{name} in {path.relative_to(services.workdir)}: ...{context}...")
    print(f"\nscanned {scanned} files for the planted secrets")
    assert scanned > 10
    assert not leaks, "\n\n".join(leaks)


# -- end_from_trigger (tests/airflow/end_from_trigger_cases.py), on these same services ---------
from tests.airflow.end_from_trigger_cases import (  # noqa: E402 - collected last, after the cases above
    test_end_from_trigger_a_triggerer_killed_after_the_cleanup_leaves_the_end_to_its_successor,
    test_end_from_trigger_marking_failed_and_clearing_still_work,
    test_end_from_trigger_outcomes_end_on_the_triggerer,
)

__all__ = [
    "test_end_from_trigger_a_triggerer_killed_after_the_cleanup_leaves_the_end_to_its_successor",
    "test_end_from_trigger_marking_failed_and_clearing_still_work",
    "test_end_from_trigger_outcomes_end_on_the_triggerer",
]


def test_services_survived(services: AirflowServices) -> None:
    """Nothing crashed along the way (a crashed service would fail later tests confusingly)."""
    for name, service in services.services.items():
        assert service.proc is not None and service.proc.poll() is None, f"{name} exited"
    try:
        services.wait_healthy(timeout=30)
    except ServiceError as exc:
        pytest.fail(str(exc))
