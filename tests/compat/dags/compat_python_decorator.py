"""`@task.kubernetes`: a Python function run in the pod, printing (partial lines too); positional and
keyword arguments, one of them an upstream result; the return value as XCom, unrolled with
`multiple_outputs`; chained tasks; a function that raises. Runs with both decorators (tests/compat).
The pods need a `python` (the real node: the python image of tools/node/images.sh)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

NS = "compat"

with DAG(dag_id="compat_python_decorator", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task.kubernetes(namespace=NS, image="python:3.12-slim", name="greet", get_logs=True)
    def greet() -> None:
        import time

        print("hello from the pod", flush=True)
        time.sleep(1)
        for row in range(3):
            print("* " * (row + 1), end="")
            print()

    @task
    def base_number() -> int:
        return 5

    @task.kubernetes(namespace=NS, image="python:3.12-slim", do_xcom_push=True, get_logs=True)
    def add(a: int, b: int, *, scale: int = 1) -> dict:
        total = (a + b) * scale
        print(f"({a} + {b}) * {scale} = {total}")
        return {"total": total, "parts": [a, b]}

    @task.kubernetes(
        namespace=NS, image="python:3.12-slim", do_xcom_push=True, multiple_outputs=True, get_logs=True
    )
    def split(result: dict) -> dict:
        return {"double": result["total"] * 2, "label": f"parts={result['parts']}"}

    @task
    def report(double: int, label: str) -> str:
        return f"{label} double={double}"

    @task.kubernetes(namespace=NS, image="python:3.12-slim", get_logs=True)
    def raises() -> None:
        print("before the error")
        raise ValueError("the function failed")

    summed = add(base_number(), 2, scale=10)
    parts = split(summed)
    greet() >> summed
    report(parts["double"], parts["label"])
    raises()
