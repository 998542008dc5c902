"""Real Airflow 3 services against the embedded cluster, for cross-process tests.

`AirflowServices` is the workshop's `AirflowStack` (kpo_async/testing/airflow_stack.py: the
services as process groups, the REST client, the metadata DB, triggerer stop/restart) with what
only the tests need: DAG files copied into a fresh DAGs folder, the simulator's planted token, the
checkout on PYTHONPATH (the test DAGs import from tests/), and reads of the embedded cluster.

The fixtures pass ``database=`` from ``KPO_ASYNC_TEST_DATABASE`` (``postgres`` in ``.ci/run``;
SQLite for a developer who does not set it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kpo_async.testing.airflow_stack import (
    AIRFLOW_BIN,
    SERVICES,
    TERMINAL_RUN_STATES,
    TERMINAL_TI_STATES,
    AirflowStack,
    LogLine,
    StackError,
    TaskLog,
    free_port,
    stop_process_group,
    wait_until,
)

__all__ = [
    "AIRFLOW_BIN",
    "EXAMPLE_DAGS",
    "REPO",
    "SERVICES",
    "TERMINAL_RUN_STATES",
    "TERMINAL_TI_STATES",
    "TEST_DAGS",
    "AirflowServices",
    "LogLine",
    "ServiceError",
    "TaskLog",
    "free_port",
    "stop_process_group",
    "wait_until",
]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO / "example_dags"
TEST_DAGS = Path(__file__).resolve().parent / "dags"
ServiceError = StackError


class AirflowServices(AirflowStack):
    """Airflow 3 (api-server, scheduler, dag-processor, triggerer) + the embedded cluster."""

    def __init__(
        self,
        workdir: Path,
        *,
        dag_files: Iterable[Path] = (),
        sim_token: str | None = None,
        **stack: Any,
    ) -> None:
        super().__init__(workdir, sim_args=["--token", sim_token] if sim_token else [], **stack)
        self.dag_files = [Path(p) for p in dag_files]

    def prepare(self) -> None:
        super().prepare()
        for dag_file in self.dag_files:
            shutil.copy(dag_file, self.dags_folder / dag_file.name)

    def airflow_env(self) -> dict[str, str]:
        env = super().airflow_env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env.update(self.extra_env)
        return env

    # -- metadata DB ---------------------------------------------------------------------------
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

    def fill_quota(self, namespace: str, pods: int) -> None:
        """Create `namespace` with a ResourceQuota `team` of `pods` pods, all taken by `blocker-<i>`
        pods (the first is named `blocker`) that run for ten minutes."""
        from kubernetes_asyncio import client, config

        async def go() -> None:
            api = await config.new_client_from_config(config_file=str(self.kubeconfig))
            async with api:
                v1 = client.CoreV1Api(api)
                await v1.create_namespace({"metadata": {"name": namespace}})
                quota = {"metadata": {"name": "team"}, "spec": {"hard": {"pods": str(pods)}}}
                await v1.create_namespaced_resource_quota(namespace, quota)
                for i in range(pods):
                    container = {"name": "c", "image": "alpine:3.20", "command": ["sleep", "600"]}
                    name = "blocker" if i == 0 else f"blocker-{i}"
                    await v1.create_namespaced_pod(
                        namespace, {"metadata": {"name": name}, "spec": {"containers": [container]}}
                    )

        asyncio.run(go())

    def delete_pod(self, namespace: str, name: str) -> None:
        from kubernetes_asyncio import client, config

        async def go() -> None:
            api = await config.new_client_from_config(config_file=str(self.kubeconfig))
            async with api:
                await client.CoreV1Api(api).delete_namespaced_pod(name, namespace, grace_period_seconds=0)

        asyncio.run(go())

    def sim_stats(self) -> dict[str, Any]:
        from kpo_async.testing.sim.control import SimControl

        async def go() -> dict[str, Any]:
            async with SimControl(str(self.kubeconfig)) as ctl:
                return await ctl.stats()

        return asyncio.run(go())

    def written_files(self) -> Iterator[Path]:
        """Every file the services wrote (task/trigger logs, service logs, DB, config)."""
        for path in self.workdir.rglob("*"):
            if path.is_file():
                yield path
