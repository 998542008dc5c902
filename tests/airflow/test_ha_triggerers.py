"""Two `airflow triggerer` processes on PostgreSQL (Airflow's HA triggerers) sharing deferred pods.

Real services (api-server, scheduler with LocalExecutor, dag-processor, two triggerers) on a private
PostgreSQL, real deferrals of `AsyncKubernetesPodOperator`. The first triggerer runs with
``--capacity`` half the runs, so the second, started once the first is full, holds the other half.
Once both deliver lines, the first is SIGKILLed (its whole process group): the second adopts its
triggers once its heartbeat is older than `triggerer_health_check_threshold` (20 s here). The
killed one is restarted (without a capacity limit); then the second is stopped gracefully (SIGTERM),
the restarted one adopts everything, and the second is restarted too. Last, the one holding every
trigger stalls (SIGSTOP) past the threshold: the other adopts them, and when the stalled one resumes
Airflow 3.3 calls its triggers' `on_kill`, which must leave the pods running. Every task must
complete once (try 1) with its XCom, every printed line must be in its log, a line may repeat only
if the SIGKILLed or the stalled triggerer had delivered it and at most once (docs/reliability.md;
none after a graceful stop), one pod per task and none left behind. Every task ends on its triggerer
(end_from_trigger, one worker start). `make soak-ha` runs the same at scale
(kpo_async/testing/soak_ha.py)."""

from __future__ import annotations

import collections
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.airflow.services import TEST_DAGS, AirflowServices, wait_until
from tests.airflow.test_services import PodRecorder, numbered, trigger_log_files

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.services,
    # Minutes and PostgreSQL: .ci/run and `make test-postgres` set KPO_ASYNC_HA_TEST=1.
    pytest.mark.skipif(
        os.environ.get("KPO_ASYNC_HA_TEST") != "1",
        reason="opt-in: KPO_ASYNC_HA_TEST=1 (.ci/run, make test-postgres)",
    ),
]

RUNS = 4
#: Long enough to outlast the deferrals, a kill, an adoption, a restart, a graceful stop and a stall.
DURATION, RATE = 270, 1
TOTAL = DURATION * RATE


@pytest.fixture(scope="module")
def services(workdir: Path) -> Iterator[AirflowServices]:  # named so conftest attaches log tails
    harness = AirflowServices(
        workdir,
        dag_files=[TEST_DAGS / "kpo_test_services.py"],
        database=os.environ.get("KPO_ASYNC_TEST_DATABASE", "postgres"),
        extra_env={
            "KPO_TEST_MARKERS": str(workdir / "markers"),
            # Every task ends on the triggerer (end_from_trigger, set deployment-wide as a user
            # would): the hand-overs below must not lose or repeat an end either.
            "AIRFLOW__KPO_ASYNC__END_FROM_TRIGGER": "True",
            # A triggerer's first request of its supervisor (a trigger's first XCom call) stops that
            # supervisor about 9 s while Airflow builds its in-process execution API; a threshold
            # below that moves triggers off a healthy triggerer and back (docs/reliability.md).
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "20",
        },
        # The first triggerer takes half of the runs; the second, started later, the rest.
        service_args={"triggerer": ["--capacity", str(RUNS // 2)]},
    )
    (workdir / "markers").mkdir(parents=True, exist_ok=True)
    try:
        # Five services and PostgreSQL on a shared 2-core machine: allow a slow start.
        harness.start(timeout=600)
        triggerer_jobs(harness, at_least=1)
        harness.wait_for_dags(["kpo_test_lines"], timeout=300)
    except BaseException:
        print(harness.tails(), file=sys.stderr)
        harness.stop()
        raise
    try:
        yield harness
    finally:
        harness.stop()


def triggerer_jobs(services: AirflowServices, at_least: int) -> list[int]:
    """Ids of the TriggererJob rows, oldest first, once there are at least `at_least`."""

    def jobs() -> list[int]:
        rows = services.query("SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id")
        return [r[0] for r in rows] if len(rows) >= at_least else []

    return wait_until(jobs, timeout=300, what=f"{at_least} triggerer jobs", first=0.5)


def owners(services: AirflowServices, run_ids: list[str]) -> dict[str, int | None]:
    """run_id -> the triggerer job holding its task's trigger (None: unassigned or not deferred)."""
    rows = services.query(
        "SELECT ti.run_id, t.triggerer_id FROM task_instance ti LEFT JOIN trigger t ON t.id = ti.trigger_id "
        "WHERE ti.dag_id = 'kpo_test_lines' AND ti.state = 'deferred'"
    )
    return {run_id: owner for run_id, owner in rows if run_id in run_ids}


def spread(services: AirflowServices, run_ids: list[str], wanted: dict[int | None, int]) -> bool:
    """Every run's task is still deferred, and its triggers are held as `wanted` (job -> count)."""
    held = owners(services, run_ids)
    return len(held) == len(run_ids) and dict(collections.Counter(held.values())) == wanted


def delivering(services: AirflowServices, run_ids: list[str]) -> bool:
    """Each run's current triggerer has written pod lines into the task's trigger log."""
    held = owners(services, run_ids)
    for run_id in run_ids:
        files = trigger_log_files(services, "kpo_test_lines", run_id, "lines")
        mine = [f for f in files if f.name.endswith(f".trigger.{held.get(run_id)}.log")]
        if not mine or not numbered_in(mine[0]):
            return False
    return True


def test_two_triggerers_a_kill_a_graceful_stop_a_stall_and_restarts_lose_nothing(
    services: AirflowServices,
) -> None:
    half = RUNS // 2
    first = triggerer_jobs(services, at_least=1)[-1]
    with PodRecorder(services, "dag_id=kpo_test_lines") as pods:
        run_ids = [
            services.trigger_dag("kpo_test_lines", conf={"duration": DURATION, "rate": RATE})
            for _ in range(RUNS)
        ]
        # 0. The first triggerer (--capacity RUNS/2) takes half; a second one, started now, the rest.
        wait_until(
            lambda: spread(services, run_ids, {first: half, None: RUNS - half}),
            timeout=480,
            what=f"every task deferred, {half} triggers on the first triggerer and the rest unassigned",
            first=1,
        )
        services.add_triggerer("triggerer-2")
        second = triggerer_jobs(services, at_least=2)[-1]
        wait_until(
            lambda: spread(services, run_ids, {first: half, second: RUNS - half}),
            timeout=300,
            what="the second triggerer to take the other half",
            first=1,
        )
        wait_until(lambda: delivering(services, run_ids), timeout=180, what="lines from both", first=1)
        held = owners(services, run_ids)
        print(f"\ntriggers per triggerer job before the kill: {dict(collections.Counter(held.values()))}")
        killed_runs = [r for r, owner in held.items() if owner == first]

        # 1. SIGKILL (the whole group) of the first; the second adopts its triggers (heartbeat expiry).
        killed_at = time.monotonic()
        services.stop_service("triggerer", signal.SIGKILL)
        wait_until(
            lambda: spread(services, run_ids, {second: RUNS}),
            timeout=180,
            what="triggerer-2 to adopt the killed triggerer's triggers",
            first=1,
        )
        adopted = time.monotonic() - killed_at
        print(f"triggerer (job {first}, {len(killed_runs)} triggers) SIGKILLed; adopted in {adopted:.1f}s")
        services.services["triggerer"].args = ["triggerer"]  # no capacity limit from now on
        services.start_service("triggerer")
        restarted = triggerer_jobs(services, at_least=3)[-1]

        # 2. Graceful stop (SIGTERM) of the second; the restarted first takes over; restart it too.
        took = services.stop_service("triggerer-2", signal.SIGTERM)
        wait_until(
            lambda: spread(services, run_ids, {restarted: RUNS}),
            timeout=180,
            what="the restarted triggerer to adopt triggerer-2's triggers",
            first=1,
        )
        print(f"triggerer-2 (job {second}) stopped gracefully in {took:.1f}s; triggers adopted")
        services.start_service("triggerer-2")
        second_again = triggerer_jobs(services, at_least=4)[-1]

        # 3. A stall (a long GC pause, an overloaded host) past the health threshold: SIGSTOP of the
        # one holding every trigger; the other adopts them. Once resumed, Airflow 3.3 cancels them
        # there as if a user had killed the tasks and calls `on_kill`: the pods must live on.
        services.signal_service("triggerer", signal.SIGSTOP, whole_group=True)
        try:
            wait_until(
                lambda: spread(services, run_ids, {second_again: RUNS}),
                timeout=180,
                what="the other triggerer to adopt the stalled one's triggers",
                first=1,
            )
        finally:
            services.signal_service("triggerer", signal.SIGCONT, whole_group=True)

        def left_running() -> bool:
            files = [
                file
                for run_id in run_ids
                for file in trigger_log_files(services, "kpo_test_lines", run_id, "lines")
                if file.name.endswith(f".trigger.{restarted}.log")
            ]
            return len(files) == RUNS and all("is left running" in file.read_text() for file in files)

        wait_until(
            left_running,
            timeout=120,
            what="the resumed triggerer's on_kill to leave each pod",
            first=1,
        )
        print(f"triggerer (job {restarted}) stalled; its triggers adopted, their pods left running")

        finals = {
            run_id: services.wait_task("kpo_test_lines", run_id, "lines", timeout=600, poll=1)
            for run_id in run_ids
        }
        pods.poll()

    problems = []
    for run_id, ti in finals.items():
        log = services.task_log("kpo_test_lines", run_id, "lines")
        numbers = numbered(log.pod_lines())
        counts = collections.Counter(numbers)
        missing = sorted(set(range(1, TOTAL + 1)) - set(counts))
        repeated = sorted(n for n, c in counts.items() if c > 1)
        files = trigger_log_files(services, "kpo_test_lines", run_id, "lines")
        by_job = {f.name.rsplit(".trigger.", 1)[1].removesuffix(".log"): f for f in files}
        # After a SIGKILL or a stall the successor repeats what the other one delivered since its
        # last checkpoint (log_checkpoint_seconds=300: since it took the trigger here); a graceful
        # stop, nothing.
        killed = set(numbered_in(by_job.get(str(first)))) if run_id in killed_runs else set()
        may_repeat = killed | set(numbered_in(by_job.get(str(restarted))))
        print(
            f"{run_id}: {ti['state']} try {ti['try_number']}, {len(numbers)} lines for {TOTAL}, "
            f"{len(repeated)} repeated ({len(may_repeat)} delivered by the SIGKILLed or the stalled "
            f"triggerer), files by job {sorted(by_job)}"
        )
        if ti["state"] != "success" or ti["try_number"] != 1:
            problems.append(f"{run_id}: {ti['state']} try {ti['try_number']}")
        elif services.xcom("kpo_test_lines", run_id, "lines") != {"lines": TOTAL, "run": run_id}:
            problems.append(f"{run_id}: wrong XCom")
        elif any(e.startswith("pod default/") and e.endswith(" succeeded") for e in log.events()):
            problems.append(f"{run_id}: finished on a worker, not by its trigger")
        if missing:
            problems.append(f"{run_id}: missing lines {missing[:10]}")
        beyond = [n for n in repeated if n not in may_repeat or counts[n] > 2]
        if beyond:
            problems.append(f"{run_id}: repeats not explained by the SIGKILL: {beyond[:10]}")
    per_run = collections.Counter(labels.get("run_id") for labels in pods.seen.values())
    assert len(pods.seen) == RUNS and set(per_run.values()) == {1}, f"pods per run: {dict(per_run)}"
    assert services.list_pods("default", "dag_id=kpo_test_lines", include_deleting=True) == []
    assert not problems, "\n".join(problems)


def numbered_in(path: Path | None) -> list[int]:
    from tests.airflow.test_services import lines_in_file

    return lines_in_file(path) if path is not None else []
