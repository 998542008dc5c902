"""Logs of several containers (init and sidecar-style ones too) and the operator callbacks.
Runs unchanged with both operators (tests/compat)."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.cncf.kubernetes.callbacks import KubernetesPodOperatorCallback
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG
from kubernetes.client import models as k8s

NS = "compat"


class RecordingCallback(KubernetesPodOperatorCallback):
    """Appends each call to the file named by $COMPAT_CALLBACK_LOG (what the test compares)."""

    @staticmethod
    def _record(event: str, **kwargs: object) -> None:
        path = os.environ.get("COMPAT_CALLBACK_LOG")
        if path:
            with open(path, "a") as f:
                f.write(f"{event} mode={kwargs.get('mode')}\n")

    @staticmethod
    def on_pod_manifest_created(*, pod_request, **kwargs) -> None:  # type: ignore[no-untyped-def,override]
        RecordingCallback._record("on_pod_manifest_created", **kwargs)

    @staticmethod
    def on_pod_creation(*, pod, client, mode, **kwargs) -> None:  # type: ignore[no-untyped-def,override]
        RecordingCallback._record("on_pod_creation", mode=mode)

    @staticmethod
    def on_pod_completion(*, pod, client, mode, **kwargs) -> None:  # type: ignore[no-untyped-def,override]
        RecordingCallback._record("on_pod_completion", mode=mode)

    @staticmethod
    def on_pod_teardown(*, pod, client, mode, **kwargs) -> None:  # type: ignore[no-untyped-def,override]
        RecordingCallback._record("on_pod_teardown", mode=mode)

    @staticmethod
    def on_pod_cleanup(*, pod, client, mode, **kwargs) -> None:  # type: ignore[no-untyped-def,override]
        RecordingCallback._record("on_pod_cleanup", mode=mode)


with DAG(dag_id="compat_logs_callbacks", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    KubernetesPodOperator(
        task_id="all_container_logs",
        name="all-container-logs",
        namespace=NS,
        image="alpine:3.20",
        cmds=["sh", "-c", "echo 'base line 1'; echo 'base line 2'"],
        init_containers=[
            k8s.V1Container(name="setup", image="alpine:3.20", command=["sh", "-c", "echo 'init line'"])
        ],
        full_pod_spec=k8s.V1Pod(
            spec=k8s.V1PodSpec(
                containers=[
                    k8s.V1Container(name="base"),
                    k8s.V1Container(
                        name="helper", image="alpine:3.20", command=["sh", "-c", "echo 'helper line'"]
                    ),
                ]
            )
        ),
        container_logs=True,
        init_container_logs=True,
        get_logs=True,
    )

    KubernetesPodOperator(
        task_id="with_callbacks",
        name="with-callbacks",
        namespace=NS,
        image="alpine:3.20",
        cmds=["sh", "-c", "echo 'called back'"],
        callbacks=RecordingCallback,
        get_logs=True,
    )

    KubernetesPodOperator(
        task_id="failing_pod",
        name="failing-pod",
        namespace=NS,
        image="alpine:3.20",
        cmds=["sh", "-c", "echo 'about to fail'; exit 7"],
        log_events_on_failure=True,
        get_logs=True,
    )
