"""Deferred task instances for a real ``airflow triggerer``, created as a worker's deferral creates them.

Runs inside the benchmark's Airflow environment (``python -m kpo_async.testing.bench.deferrals``,
its env names AIRFLOW_HOME and the database). It creates one DAG run of the bench DAG (its mapped
task instances come from the serialized DAG, as the scheduler's would), then for each task instance
does what the execution API does when a worker reports ``DeferTask``: insert a ``trigger`` row with
the trigger's ``serialize()`` kwargs (through the Task SDK's serde, as the worker sends them) and set
the task instance to ``deferred`` with that trigger, ``next_method`` and ``try_number`` 1. The
triggerer then picks the rows up like any other, writes each trigger's log lines into the task's
trigger log file, and on an event moves the task instance to ``scheduled`` with the event in
``next_kwargs``, as for a real deferral.

    python -m kpo_async.testing.bench.deferrals run     CONFIG.json   # dag run + task instances
    python -m kpo_async.testing.bench.deferrals defer   CONFIG.json   # trigger rows, TIs deferred
    python -m kpo_async.testing.bench.deferrals states  CONFIG.json   # TI states + events, as JSON
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import sys
import time
from typing import Any

BENCH_DAG_ID = "kpo_async_bench_rt"
PROBE_TASK = "probe"

#: The bench DAG, written into the benchmark's dags folder. Mapped tasks: one map index per pod.
DAG_TEMPLATE = '''"""The real-triggerer benchmark's DAG (written by kpo_async.testing.bench.deferrals)."""
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

N = {n!r}
with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False):
    EmptyOperator(task_id="{probe}")
    if N.get("ours"):
        from kpo_async import AsyncKubernetesPodOperator

        AsyncKubernetesPodOperator.partial(task_id="ours", image="alpine:3.20", name="bench").expand(
            arguments=[[str(i)] for i in range(N["ours"])]
        )
    if N.get("official"):
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        KubernetesPodOperator.partial(task_id="official", image="alpine:3.20", name="bench").expand(
            arguments=[[str(i)] for i in range(N["official"])]
        )
'''


def dag_source(counts: dict[str, int]) -> str:
    return DAG_TEMPLATE.format(n=counts, dag_id=BENCH_DAG_ID, probe=PROBE_TASK)


def create_run(config: dict[str, Any]) -> dict[str, Any]:
    from airflow.models.dagbag import DBDagBag
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(BENCH_DAG_ID, session=session)
        if dag is None:
            raise SystemExit(f"DAG {BENCH_DAG_ID} is not serialized; run `airflow dags reserialize`")
        now = datetime.datetime.now(tz=datetime.timezone.utc)
        dag.create_dagrun(
            run_id=config["run_id"],
            run_after=now,
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            start_date=now,
            session=session,
        )
        session.flush()
        tis = session.query(TI).filter(TI.dag_id == BENCH_DAG_ID, TI.run_id == config["run_id"]).all()
        return {"task_instances": sorted((ti.task_id, ti.map_index) for ti in tis)}


def _trigger_for(config: dict[str, Any], task_id: str, index: int) -> Any:
    if task_id == PROBE_TASK:
        from kpo_async.testing.bench.probe import LagProbeTrigger

        return LagProbeTrigger(preload=config.get("preload") or [])
    if config.get("floor_until"):  # Airflow's own cost: a trigger that only waits
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        moment = datetime.datetime.fromtimestamp(config["floor_until"], tz=datetime.timezone.utc)
        return DateTimeTrigger(moment=moment)
    from kpo_async.testing.bench.common import official_trigger, our_trigger

    pod = config["pods"][task_id][index]
    if task_id == "ours":
        checkpoint = {"log_checkpoint_seconds": config["checkpoint"]} if config.get("checkpoint") else {}
        return our_trigger(
            pod["name"],
            config["namespace"],
            config["kubeconfig"],
            get_logs=config["get_logs"],
            xcom=config.get("xcom", False),
            now=time.time(),
            **checkpoint,
        )
    return official_trigger(
        pod["name"],
        config["namespace"],
        _kubeconfig_dict(config["kubeconfig"]),
        get_logs=config["get_logs"],
        logging_interval=config.get("logging_interval"),
        start=datetime.datetime.now(tz=datetime.timezone.utc),
    )


@functools.cache
def _kubeconfig_dict(path: str) -> Any:
    """The kubeconfig as the official operator passes it (`config_dict`), read once per file."""
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle)


def defer(config: dict[str, Any]) -> dict[str, Any]:
    """Defer the task instances named in config["defer"] ([task_id, map_index] pairs)."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.trigger import Trigger
    from airflow.sdk.serde import serialize as serde_serialize
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import update

    wanted = [(task_id, int(index)) for task_id, index in config["defer"]]
    created = 0
    with create_session() as session:
        for task_id, index in wanted:
            classpath, kwargs = _trigger_for(config, task_id, index).serialize()
            # What the execution API does with a worker's DeferTask (plain-dict kwargs).
            row = Trigger(classpath=classpath, kwargs={})
            row.encrypted_kwargs = json.dumps(serde_serialize(kwargs))
            session.add(row)
            session.flush()
            session.execute(
                update(TI)
                .where(
                    TI.dag_id == BENCH_DAG_ID,
                    TI.run_id == config["run_id"],
                    TI.task_id == task_id,
                    TI.map_index == index,
                )
                .values(
                    state=TaskInstanceState.DEFERRED,
                    trigger_id=row.id,
                    next_method="execute_complete",
                    next_kwargs={},
                    try_number=1,
                    start_date=datetime.datetime.now(tz=datetime.timezone.utc),
                )
            )
            created += 1
            if created % 50 == 0:  # short transactions: the triggerers write to these tables too
                session.commit()
    return {"deferred": created}


def states(config: dict[str, Any]) -> dict[str, Any]:
    """Every bench task instance: state, event payload (next_kwargs), trigger and its triggerer."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    out = []
    with create_session() as session:
        rows = (
            session.query(
                TI.task_id, TI.map_index, TI.state, TI.next_kwargs, TI.trigger_id, Trigger.triggerer_id
            )
            .outerjoin(Trigger, Trigger.id == TI.trigger_id)
            .filter(TI.dag_id == BENCH_DAG_ID, TI.run_id == config["run_id"])
            .all()
        )
        for task_id, index, state, next_kwargs, trigger_id, triggerer_id in rows:
            event = None
            if isinstance(next_kwargs, dict) and "event" in next_kwargs:
                from airflow.sdk.serde import deserialize

                event = next_kwargs["event"]
                try:
                    event = deserialize(event)
                except Exception:
                    pass
            out.append(
                {
                    "task_id": task_id,
                    "map_index": index,
                    "state": str(state.value if hasattr(state, "value") else state),
                    "event": event,
                    "trigger_id": trigger_id,
                    "triggerer_id": triggerer_id,
                }
            )
    return {"task_instances": out}


COMMANDS = {"run": create_run, "defer": defer, "states": states}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    if not os.path.exists(args[1]):
        # Started ahead of time: do the slow imports now, then wait for the config to appear.
        import airflow.models.taskinstance
        import airflow.models.trigger  # noqa: F401

        import triggers.pod  # noqa: F401

        deadline = time.time() + 900
        while not os.path.exists(args[1]):
            if time.time() > deadline:
                raise SystemExit(f"{args[1]} never appeared")
            time.sleep(0.1)
    with open(args[1]) as handle:
        config = json.load(handle)
    result = COMMANDS[args[0]](config)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
