"""Two `airflow triggerer` processes on PostgreSQL (Airflow's HA triggerers) sharing deferred pods.

Real services (api-server, scheduler with LocalExecutor, dag-processor, two triggerers) on a private
PostgreSQL, real deferrals of `AsyncKubernetesPodOperator`. The triggerer holding the most triggers
is SIGKILLed mid-run: the other picks its triggers up once its heartbeat is older than
`triggerer_health_check_threshold` (8 s here). The killed one is restarted; then the other is
stopped gracefully (SIGTERM) and restarted too. Every task must complete once (try 1) with its
XCom, every printed line must be in its log, repeats only where docs/reliability.md allows them
(after a SIGKILL, lines since the last checkpoint; none after a graceful stop), one pod per task
and none left behind. `make soak-ha` runs the same at scale (kpo_async/testing/soak_ha.py).
"""

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
    # Not green yet on the shared 2-core machine (see the branch's report): opt in.
    pytest.mark.skipif(
        os.environ.get("KPO_ASYNC_HA_TEST") != "1", reason="opt-in until green in CI: KPO_ASYNC_HA_TEST=1"
    ),
]

RUNS = 4
#: Long enough to outlast the deferrals, a kill, an adoption, a restart and a graceful stop.
DURATION, RATE = 240, 1
TOTAL = DURATION * RATE


@pytest.fixture(scope="module")
def services(workdir: Path) -> Iterator[AirflowServices]:  # named so conftest attaches log tails
    harness = AirflowServices(
        workdir,
        dag_files=[TEST_DAGS / "kpo_test_services.py"],
        database=os.environ.get("KPO_ASYNC_TEST_DATABASE", "postgres"),
        extra_env={"KPO_TEST_MARKERS": str(workdir / "markers")},
    )
    (workdir / "markers").mkdir(parents=True, exist_ok=True)
    try:
        # Five services and PostgreSQL on a shared 2-core machine: allow a slow start.
        harness.start(timeout=600)
        triggerer_jobs(harness, at_least=1)
        harness.add_triggerer("triggerer-2")
        triggerer_jobs(harness, at_least=2)
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

    return wait_until(jobs, timeout=120, what=f"{at_least} triggerer jobs", first=0.5)


def owners(services: AirflowServices, run_ids: list[str]) -> dict[str, int | None]:
    """run_id -> the triggerer job holding its task's trigger (None: unassigned or not deferred)."""
    rows = services.query(
        "SELECT ti.run_id, t.triggerer_id FROM task_instance ti LEFT JOIN trigger t ON t.id = ti.trigger_id "
        "WHERE ti.dag_id = 'kpo_test_lines' AND ti.state = 'deferred'"
    )
    return {run_id: owner for run_id, owner in rows if run_id in run_ids}


def test_two_triggerers_a_kill_a_graceful_stop_and_restarts_lose_nothing(services: AirflowServices) -> None:
    jobs = dict(zip(("triggerer", "triggerer-2"), triggerer_jobs(services, at_least=2), strict=False))
    with PodRecorder(services, "dag_id=kpo_test_lines") as pods:
        run_ids = [
            services.trigger_dag("kpo_test_lines", conf={"duration": DURATION, "rate": RATE})
            for _ in range(RUNS)
        ]
        wait_until(
            lambda: len(held := owners(services, run_ids)) == RUNS and all(held.values()),
            timeout=480,
            what="every task deferred and its trigger assigned",
            first=1,
        )
        time.sleep(10)  # lines flow on both
        held = owners(services, run_ids)
        spread = collections.Counter(held.values())
        print(f"\ntriggers per triggerer job before the kill: {dict(spread)} (jobs {jobs})")
        victim_job = spread.most_common(1)[0][0]
        victim = next(name for name, job in jobs.items() if job == victim_job)
        survivor = next(name for name in jobs if name != victim)
        killed_runs = [r for r, owner in held.items() if owner == victim_job]

        # 1. SIGKILL (the whole group) of the triggerer holding the most triggers.
        killed_at = time.monotonic()
        services.stop_service(victim, signal.SIGKILL)
        wait_until(
            lambda: set(owners(services, run_ids).values()) <= {jobs[survivor]},
            timeout=120,
            what=f"{survivor} to adopt {victim}'s triggers",
            first=1,
        )
        adopted = time.monotonic() - killed_at
        print(
            f"{victim} (job {victim_job}, {len(killed_runs)} triggers) SIGKILLed; adopted in {adopted:.1f}s"
        )
        services.start_service(victim)
        jobs[victim] = triggerer_jobs(services, at_least=3)[-1]

        # 2. Graceful stop (SIGTERM) of the other; the restarted one takes over; then restart it.
        time.sleep(5)
        took = services.stop_service(survivor, signal.SIGTERM)
        wait_until(
            lambda: set(owners(services, run_ids).values()) <= {jobs[victim]},
            timeout=120,
            what=f"{victim} to adopt {survivor}'s triggers",
            first=1,
        )
        print(f"{survivor} stopped gracefully in {took:.1f}s; triggers adopted")
        services.start_service(survivor)
        jobs[survivor] = triggerer_jobs(services, at_least=4)[-1]

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
        # After a SIGKILL the successor repeats what the dead one delivered since its last
        # checkpoint (log_checkpoint_seconds=300: since the start here); a graceful stop, nothing.
        killed_file = by_job.get(str(victim_job))
        bound = max(numbered_in(killed_file), default=0) if run_id in killed_runs and killed_file else 0
        print(
            f"{run_id}: {ti['state']} try {ti['try_number']}, {len(numbers)} lines for {TOTAL}, "
            f"{len(repeated)} repeated (bound {bound}), files by job {sorted(by_job)}"
        )
        if ti["state"] != "success" or ti["try_number"] != 1:
            problems.append(f"{run_id}: {ti['state']} try {ti['try_number']}")
        elif services.xcom("kpo_test_lines", run_id, "lines") != {"lines": TOTAL, "run": run_id}:
            problems.append(f"{run_id}: wrong XCom")
        if missing:
            problems.append(f"{run_id}: missing lines {missing[:10]}")
        if any(n > bound for n in repeated):
            problems.append(f"{run_id}: repeats beyond the documented bound {bound}: {repeated[-5:]}")
    per_run = collections.Counter(labels.get("run_id") for labels in pods.seen.values())
    assert len(pods.seen) == RUNS and set(per_run.values()) == {1}, f"pods per run: {dict(per_run)}"
    assert services.list_pods("default", "dag_id=kpo_test_lines", include_deleting=True) == []
    assert not problems, "\n".join(problems)


def numbered_in(path: Path | None) -> list[int]:
    from tests.airflow.test_services import lines_in_file

    return lines_in_file(path) if path is not None else []
