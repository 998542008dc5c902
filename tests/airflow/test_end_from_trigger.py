"""`end_from_trigger=True` under real Airflow 3 services (scheduler, LocalExecutor, triggerer).

The trigger ends the task itself: XCom pushed, pod cleaned up, a task-end event; so the task starts
on a worker once. What a worker must still do (multiple_outputs; failures on Airflow < 3.3) goes
back to one. A triggerer killed once the pod is gone but before the task's end is committed leaves
the end to its successor.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from kpo_async.airflow_compat import triggerer_retries_failed_tasks
from tests.airflow.services import TEST_DAGS, AirflowServices, ServiceError, wait_until

pytestmark = [pytest.mark.airflow, pytest.mark.services]

DAG_IDS = ("kpo_eft_outcomes", "kpo_eft_crash", "kpo_eft_long")
#: The worker's own line when it finalizes a resumed task (`execute_complete`).
WORKER_FINALIZED = re.compile(r"pod default/\S+ succeeded")
ENDED_XCOM = "_kpo_async_ended"


@pytest.fixture(scope="module")
def services(workdir: Path) -> Iterator[AirflowServices]:
    harness = AirflowServices(
        workdir,
        dag_files=[TEST_DAGS / "kpo_test_end_from_trigger.py"],
        database=os.environ.get("KPO_ASYNC_TEST_DATABASE", "sqlite"),
    )
    with harness:
        harness.wait_for_dags(DAG_IDS)
        yield harness


def worker_starts(services: AirflowServices, dag_id: str, run_id: str, task_id: str) -> int:
    """How many times the task ran on a worker: the scheduler logs the executor's event of each run."""
    log = (services.workdir / "logs" / "services" / "scheduler.log").read_text(errors="replace")
    key = rf"TaskInstanceKey\(dag_id='{dag_id}', task_id='{task_id}', run_id='{re.escape(run_id)}'"
    return len(re.findall(rf"Received executor event with state \w+ for task instance {key}", log))


def xcom_or_none(services: AirflowServices, dag_id: str, run_id: str, task_id: str, key: str) -> object:
    try:
        return services.xcom(dag_id, run_id, task_id, key=key)
    except ServiceError:
        return None


def test_outcomes_end_on_the_triggerer(services: AirflowServices) -> None:
    dag_id = "kpo_eft_outcomes"
    run_id = services.trigger_dag(dag_id)
    run = services.wait_run(dag_id, run_id, timeout=240)
    states = {
        t: services.task_instance(dag_id, run_id, t)["state"]
        for t in ("succeeds", "fails", "skips", "keeps", "worker_needed")
    }
    assert states == {
        "succeeds": "success",
        "fails": "failed",
        "skips": "skipped",
        "keeps": "success",
        "worker_needed": "success",
    }, (states, run)

    # Success: one worker start, the XCom pushed by the trigger, the pod deleted by it.
    assert worker_starts(services, dag_id, run_id, "succeeds") == 1
    assert services.xcom(dag_id, run_id, "succeeds") == {"run": run_id}
    assert services.xcom(dag_id, run_id, "succeeds", key="pod_name").startswith("succeeds-")
    log = services.task_log(dag_id, run_id, "succeeds")
    assert not any(WORKER_FINALIZED.fullmatch(e) for e in log.events()), log.text
    assert any(re.fullmatch(r"deleted pod default/succeeds-\w+", e) for e in log.events()), log.text
    assert xcom_or_none(services, dag_id, run_id, "succeeds", ENDED_XCOM) is None

    # Failure: the error and the log tail in the task log, and the retry taken.
    fails = services.task_instance(dag_id, run_id, "fails")
    assert fails["try_number"] == 2, fails
    log = services.task_log(dag_id, run_id, "fails", try_number=1)
    assert "exited with code 2" in log.raw_text and "Last log lines:" in log.raw_text, log.text
    starts = worker_starts(services, dag_id, run_id, "fails")
    if triggerer_retries_failed_tasks():
        assert starts == 2, starts  # one per try
    else:
        assert starts == 4, starts
        assert "Airflow < 3.3 fails a task ended by its trigger for good" in log.raw_text

    skips = services.task_log(dag_id, run_id, "skips")
    assert worker_starts(services, dag_id, run_id, "skips") == 1
    assert "exited with code 3: skipping" in skips.raw_text, skips.text

    # keep_pod: the pod stays, finalized and released by the trigger.
    (kept,) = services.list_pods("default", f"dag_id={dag_id},task_id=keeps", include_deleting=True)
    assert kept["metadata"]["labels"].get("kpo-async.io/finalized") == "true"
    assert not kept["metadata"].get("finalizers"), kept["metadata"]
    assert worker_starts(services, dag_id, run_id, "keeps") == 1

    # What only a worker does: resumed there, and the log says why.
    assert worker_starts(services, dag_id, run_id, "worker_needed") == 2
    needed = services.task_log(dag_id, run_id, "worker_needed").raw_text
    assert "this task finishes on a worker, as multiple_outputs fans the XCom out on a worker" in needed

    for task_id in ("succeeds", "fails", "skips", "worker_needed"):
        assert (
            services.list_pods("default", f"dag_id={dag_id},task_id={task_id}", include_deleting=True) == []
        )
        assert services.trigger_rows(dag_id, run_id, task_id) == []


def test_a_triggerer_killed_after_the_cleanup_leaves_the_end_to_its_successor(
    services: AirflowServices,
) -> None:
    """The pod's DELETE is carried out but answered only 30 s later: the triggerer is killed in
    between, with the pod gone and the task still deferred. The next triggerer ends it."""
    from kpo_async.testing.sim.control import SimControl

    dag_id, task_id = "kpo_eft_crash", "crash"

    async def hold_delete_answers() -> None:
        async with SimControl(str(services.kubeconfig)) as control:
            await control.add_fault(
                {"method": "DELETE", "path": r"/pods/crash-", "times": None, "latency_after": 30.0}
            )

    asyncio.run(hold_delete_answers())
    run_id = services.trigger_dag(dag_id)
    try:
        wait_until(
            lambda: services.task_instance(dag_id, run_id, task_id)["state"] == "deferred",
            timeout=120,
            what="the task deferred",
        )
        wait_until(
            lambda: not services.list_pods("default", f"dag_id={dag_id}", include_deleting=True),
            timeout=120,
            what="the pod deleted by the trigger",
        )
        assert services.task_instance(dag_id, run_id, task_id)["state"] == "deferred"
        assert services.xcom(dag_id, run_id, task_id) == {"run": run_id}  # pushed before the cleanup
        services.restart_triggerer(signal.SIGKILL)
    finally:
        asyncio.run(_clear_faults(services))
    ti = services.wait_task(dag_id, run_id, task_id, timeout=120)
    log = services.task_log(dag_id, run_id, task_id)
    assert ti["state"] == "success" and ti["try_number"] == 1, log.text
    assert services.xcom(dag_id, run_id, task_id) == {"run": run_id}
    assert worker_starts(services, dag_id, run_id, task_id) == 1
    wait_until(
        lambda: xcom_or_none(services, dag_id, run_id, task_id, ENDED_XCOM) is None,
        timeout=30,
        what="the end's record removed",
    )


async def _clear_faults(services: AirflowServices) -> None:
    from kpo_async.testing.sim.control import SimControl

    async with SimControl(str(services.kubeconfig)) as control:
        await control.clear_faults()


def test_marking_failed_and_clearing_still_work(services: AirflowServices) -> None:
    dag_id, task_id = "kpo_eft_long", "long"
    marked, cleared = services.trigger_dag(dag_id), services.trigger_dag(dag_id)
    for run_id in (marked, cleared):  # followed by a trigger: its pod's lines reach the task log
        services.wait_task(dag_id, run_id, task_id, states=("deferred",), timeout=120)
        wait_until(
            lambda run_id=run_id: services.task_log(dag_id, run_id, task_id).pod_lines(),
            timeout=120,
            what="the pod's lines in the task log",
        )
    services.set_task_state(dag_id, marked, task_id, "failed")
    services.api(
        "POST",
        f"/api/v2/dags/{dag_id}/clearTaskInstances",
        json={"dag_run_id": cleared, "task_ids": [task_id], "dry_run": False, "only_failed": False},
    )
    marked_pod = services.xcom(dag_id, marked, task_id, key="pod_name")
    wait_until(
        lambda: all(p["metadata"]["name"] != marked_pod for p in services.list_pods("default")),
        timeout=90,
        what="the marked task's pod deleted",
    )
    wait_until(
        lambda: (
            services.task_instance(dag_id, cleared, task_id)["try_number"] == 2
            and services.task_instance(dag_id, cleared, task_id)["state"] == "deferred"
        ),
        timeout=120,
        what="the cleared task deferred again",
    )
    assert services.task_instance(dag_id, marked, task_id)["state"] == "failed"
    pods = services.list_pods("default", f"dag_id={dag_id}")
    assert len(pods) == 1, pods  # the cleared task's: adopted by its second try, or a new one
    services.set_task_state(dag_id, cleared, task_id, "success")
    wait_until(lambda: not services.list_pods("default", f"dag_id={dag_id}"), timeout=90, what="no pod left")
