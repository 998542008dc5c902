"""Hello, name: the guide's first example, run by kpo-async.

The guide builds a Haskell image that prints ``Hello, $NAME_TO_GREET``; here the same program is
one line of shell in the public ``alpine`` image, so the DAG runs unchanged on any cluster and on
the embedded one. The pod's lines appear in the task log as the pod prints them.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from kpo_async import AsyncKubernetesPodOperator

# set the name that will be printed
name = "your_name"

with DAG(
    dag_id="example_kpo_async_hello_name",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["kpo-async", "example"],
) as dag:
    say_hello_name = AsyncKubernetesPodOperator(
        # unique id of the task within the DAG
        task_id="say_hello_name",
        # the Docker image to launch
        image="alpine:3.20",
        cmds=["sh", "-c"],
        arguments=['echo "Hello, $NAME_TO_GREET"; for i in 1 2 3; do echo "step $i of 3"; sleep 1; done'],
        # Pod configuration
        # name the Pod
        name="hello-name",
        # give the Pod name a suffix that is unique per task try
        random_name_suffix=True,
        # attach labels to the Pod, can be used for grouping
        labels={"app": "backend", "env": "dev"},
        # reattach to the pod instead of creating a new one if the worker is lost
        reattach_on_restart=True,
        # delete the Pod when it is finished
        on_finish_action="delete_pod",
        # stream the container's stdout into the task log
        get_logs=True,
        # log the pod's events if it fails
        log_events_on_failure=True,
        # pass your name as an environment var
        env_vars={"NAME_TO_GREET": f"{name}"},
    )
