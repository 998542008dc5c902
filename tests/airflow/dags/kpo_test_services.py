"""Test-only DAGs for tests/airflow/test_services.py (real scheduler, workers and triggerer).

The pods' behaviour comes from the embedded cluster's behaviour annotation
(``sim.kpo-async.io/behavior``): numbered log lines at a fixed rate, a run time, an XCom value.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from kpo_async import AsyncKubernetesPodOperator

BEHAVIOR = "sim.kpo-async.io/behavior"
START = datetime(2026, 1, 1)


def behavior(**spec) -> dict[str, str]:
    return {BEHAVIOR: json.dumps(spec)}


def test_dag(dag_id: str, **kwargs) -> DAG:
    return DAG(
        dag_id=dag_id, start_date=START, schedule=None, catchup=False, tags=["kpo-async", "test"], **kwargs
    )


# A pod printing "line 1" .. "line N" at `rate` lines per second, then pushing an XCom. The
# behaviour comes from the run's conf (rendered into the templated `annotations`).
with test_dag("kpo_test_lines", params={"duration": 25, "rate": 5}):
    AsyncKubernetesPodOperator(
        task_id="lines",
        image="alpine:3.20",
        name="lines",
        annotations={
            BEHAVIOR: '{"duration_seconds": {{ params.duration }}, '
            '"log_lines_per_second": {{ params.rate }}, '
            '"xcom": {"lines": {{ (params.duration * params.rate) | int }}, "run": "{{ run_id }}"}}'
        },
        do_xcom_push=True,
        startup_timeout_seconds=60,
    )

# execution_timeout=45 s on a pod that would run 90 s.
with test_dag("kpo_test_deadline"):
    AsyncKubernetesPodOperator(
        task_id="slow",
        image="alpine:3.20",
        name="slow",
        annotations=behavior(duration_seconds=90, log_lines_per_second=1),
        execution_timeout=timedelta(seconds=45),
        startup_timeout_seconds=60,
    )

# execution_timeout=12 s on a pod that would run 60 s.
with test_dag("kpo_test_timeout"):
    AsyncKubernetesPodOperator(
        task_id="times_out",
        image="alpine:3.20",
        name="times-out",
        annotations=behavior(duration_seconds=60, log_lines_per_second=1),
        execution_timeout=timedelta(seconds=12),
        startup_timeout_seconds=60,
    )

# A long pod for marking the deferred task failed / success by hand.
with test_dag("kpo_test_user_kill"):
    AsyncKubernetesPodOperator(
        task_id="long",
        image="alpine:3.20",
        name="long",
        annotations=behavior(duration_seconds=300, log_lines_per_second=1),
        on_kill_action="delete_pod",
        startup_timeout_seconds=60,
    )


# A pod of 40 s for clearing the deferred task by hand: its next try ends either way, whether it
# adopts this pod (reattach_on_restart) or runs a new one.
with test_dag("kpo_test_clear"):
    AsyncKubernetesPodOperator(
        task_id="cleared",
        image="alpine:3.20",
        name="cleared",
        annotations=behavior(duration_seconds=40, log_lines_per_second=1, xcom={"done": True}),
        do_xcom_push=True,
        startup_timeout_seconds=60,
    )


class DiesAfterSubmitOperator(AsyncKubernetesPodOperator):
    """Test scaffolding: on try 1, after the pod was created and before deferring, record this
    process's pid for the test and wait to be killed (SIGKILL, as an OOM kill or a lost node)."""

    async def _submit(self, context, identity, client, launch):
        trigger = await super()._submit(context, identity, client, launch)
        if identity.try_number == 1:
            markers = Path(os.environ["KPO_TEST_MARKERS"])
            marker = markers / f"{identity.dag_id}.{identity.task_id}.{context['ti'].id}.json"
            marker.write_text(
                json.dumps({"pid": os.getpid(), "pod": trigger.pod_name, "ti_id": str(context["ti"].id)})
            )
            await asyncio.sleep(600)
        return trigger


with test_dag(
    "kpo_test_worker_kill",
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
):
    for reattach in (True, False):
        DiesAfterSubmitOperator(
            task_id="reattach" if reattach else "no_reattach",
            image="alpine:3.20",
            name="wk-reattach" if reattach else "wk-no-reattach",
            annotations=behavior(duration_seconds=20, log_lines_per_second=2, xcom={"reattach": reattach}),
            reattach_on_restart=reattach,
            do_xcom_push=True,
            startup_timeout_seconds=60,
        )

# Secrets: the cluster is reached through a connection whose inline kube_config holds the bearer
# token; the pod gets a value from a Variable with a sensitive name. It prints only lengths.
with test_dag("kpo_test_secrets"):
    AsyncKubernetesPodOperator(
        task_id="uses_secrets",
        kubernetes_conn_id="k8s_inline",
        image="alpine:3.20",
        name="secrets",
        cmds=["sh", "-c"],
        arguments=[
            # ${#VAR} opens a Jinja comment: keep it raw.
            'echo "api token has {% raw %}${#API_TOKEN}{% endraw %} chars"; '
            'echo "{\\"ok\\": true}" > /airflow/xcom/return.json'
        ],
        env_vars={"API_TOKEN": "{{ var.value.kpo_api_secret }}"},
        do_xcom_push=True,
        startup_timeout_seconds=60,
    )

# A pod that can never be scheduled (no node has disktype=ssd): ends by startup_timeout_seconds.
with test_dag("kpo_test_startup"):
    AsyncKubernetesPodOperator(
        task_id="never_starts",
        image="alpine:3.20",
        name="never-starts",
        node_selector={"disktype": "ssd"},
        startup_timeout_seconds=40,
    )

# A pod that prints a secret it was given (a Variable with a sensitive name) to its own log.
with test_dag("kpo_test_secret_echo"):
    AsyncKubernetesPodOperator(
        task_id="echoes_secret",
        image="alpine:3.20",
        name="echoes-secret",
        cmds=["sh", "-c"],
        arguments=['echo "my api secret is $API_SECRET"'],
        env_vars={"API_SECRET": "{{ var.value.kpo_echo_secret }}"},
        startup_timeout_seconds=60,
    )

# An init container holds the base container for a few seconds: the test takes the pod away then
# (kubelet eviction); the task relaunches it within its try, on the real services.
with test_dag("kpo_test_relaunch"):
    AsyncKubernetesPodOperator(
        task_id="relaunched",
        image="alpine:3.20",
        name="relaunched",
        init_containers=[{"name": "prepare", "image": "alpine:3.20", "command": ["sh", "-c", "sleep 10"]}],
        annotations=behavior(duration_seconds=20, log_lines_per_second=2, xcom={"relaunched": True}),
        do_xcom_push=True,
        startup_timeout_seconds=90,
    )
