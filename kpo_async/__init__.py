"""kpo-async: run a container image as a Kubernetes Pod from Airflow without holding a worker slot."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["AsyncKubernetesPodOperator", "__version__"]


def __getattr__(name: str) -> Any:  # lazy: importing the sim or the trigger must not import the operator
    if name == "AsyncKubernetesPodOperator":
        from kpo_async.operator import AsyncKubernetesPodOperator

        return AsyncKubernetesPodOperator
    raise AttributeError(name)
