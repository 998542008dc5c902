"""`@task.kubernetes_cmd`: the function returns the pod's command, built from upstream results; the
entrypoint's arguments only (`args_only`); Jinja in the returned command and in the function's
arguments; an XCom written by the command. Runs with both decorators (tests/compat)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

NS = "compat"

with DAG(dag_id="compat_cmd_decorator", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def colour() -> str:
        return "teal"

    @task
    def count() -> int:
        return 3

    @task.kubernetes_cmd(namespace=NS, image="alpine:3.20", name="whole-command", get_logs=True)
    def whole_command(what: str, how_many: int) -> list[str]:
        return ["sh", "-c", f'for i in $(seq 1 {how_many}); do echo "{what} $i"; done']

    # alpine has no entrypoint: the arguments are the whole argv
    @task.kubernetes_cmd(args_only=True, namespace=NS, image="alpine:3.20", get_logs=True)
    def only_arguments(what: str) -> list[str]:
        return ["sh", "-c", f"echo 'arguments only: {what}'"]

    @task.kubernetes_cmd(namespace=NS, image="alpine:3.20", do_xcom_push=True, get_logs=True)
    def templated_command(dag_name: str) -> list[str]:
        script = (
            "echo 'task {{ task.task_id }} of " + dag_name + " on {{ ds }}'; "
            'mkdir -p /airflow/xcom; echo \'{"day": "{{ ds }}"}\' > /airflow/xcom/return.json'
        )
        return ["sh", "-c", script]

    @task.kubernetes_cmd(namespace=NS, image="alpine:3.20", get_logs=True)
    def failing_command() -> list[str]:
        return ["sh", "-c", "echo 'about to fail' >&2; exit 4"]

    c, n = colour(), count()
    [whole_command(c, n), only_arguments(c)] >> templated_command("{{ dag.dag_id }}")
    failing_command()
