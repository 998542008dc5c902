"""``@task.kpo_async_cmd``: the official ``@task.kubernetes_cmd`` on `AsyncKubernetesPodOperator`.

The decorated function returns the pod's command (or, with ``args_only=True``, the arguments to
the image's entrypoint) as a list of strings; the pod runs it, deferrable by default. The name
differs from the official decorator's, so both providers can be installed together.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk.bases.decorator import (
    DecoratedOperator,
    TaskDecorator,
    determine_kwargs,
    task_decorator_factory,
)
from airflow.sdk.definitions.context import context_merge

from kpo_async.operator import AsyncKubernetesPodOperator


class KpoAsyncCmdDecoratedOperator(DecoratedOperator, AsyncKubernetesPodOperator):
    custom_operator_name = "@task.kpo_async_cmd"
    template_fields: Sequence[str] = ("op_args", "op_kwargs", *AsyncKubernetesPodOperator.template_fields)

    def __init__(
        self, *, python_callable: Callable[..., Any], args_only: bool = False, **kwargs: Any
    ) -> None:
        self.args_only = args_only
        if kwargs.pop("cmds", None) is not None or kwargs.pop("arguments", None) is not None:
            warnings.warn(
                f"{self.custom_operator_name} ignores cmds and arguments: return the command (or, with "
                "args_only=True, the entrypoint's arguments) from the decorated function",
                UserWarning,
                stacklevel=3,
            )
        kwargs.setdefault("name", f"k8s-airflow-pod-{python_callable.__name__}")
        super().__init__(python_callable=python_callable, **kwargs)

    def execute(self, context: Any) -> Any:
        context_merge(context, self.op_kwargs)
        function = self.python_callable
        command = function(*self.op_args, **determine_kwargs(function, self.op_args, context))
        if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
            raise TypeError(f"{function.__name__} must return a list of strings, not {command!r}")
        if not command:
            raise ValueError(f"{function.__name__} returned an empty command")
        self.cmds, self.arguments = ([], command) if self.args_only else (command, [])
        self.render_template_fields(context)  # Jinja in the returned command, as the official
        return super().execute(context)


def kpo_async_cmd_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """The decorated function returns the command the pod runs (a list of strings)."""
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=KpoAsyncCmdDecoratedOperator, **kwargs
    )
