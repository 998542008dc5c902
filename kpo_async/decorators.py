"""The official ``@task.kubernetes`` / ``@task.kubernetes_cmd`` on `AsyncKubernetesPodOperator`.

``@task.kpo_async``: the decorated function runs in the pod (which needs a ``python`` on its PATH),
its arguments pickled, its return value the XCom with ``do_xcom_push=True``.
``@task.kpo_async_cmd``: the function returns the pod's command (or, with ``args_only=True``, the
arguments to the image's entrypoint) as a list of strings. Both are deferrable by default; their
names differ from the official decorators', so both providers can be installed together.
"""

from __future__ import annotations

import base64
import importlib
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

if TYPE_CHECKING:
    from airflow.sdk import Context
try:  # Airflow >= 3.1
    from airflow.sdk.bases.decorator import determine_kwargs
except ImportError:  # Airflow 3.0
    from airflow.utils.operator_helpers import determine_kwargs  # type: ignore[attr-defined]

from kpo_async.identity import XCOM_RETURN_FILE
from kpo_async.operator import AsyncKubernetesPodOperator

#: The env var holding the program the pod runs (base64), and the command that runs it. The source
#: goes into linecache and an exception is printed by `traceback`, so that the traceback shows the
#: function's lines as from a script file (the interpreter's own printer reads only real files).
SCRIPT_ENV = "__KPO_ASYNC_PYTHON_SCRIPT"
SCRIPT_NAME = "<kpo-async task>"
RUN_SCRIPT = (
    "import base64, linecache, os, sys, traceback\n"
    f"s = base64.b64decode(os.environ['{SCRIPT_ENV}']).decode()\n"
    f"linecache.cache[{SCRIPT_NAME!r}] = (len(s), None, s.splitlines(True), {SCRIPT_NAME!r})\n"
    f"try: exec(compile(s, {SCRIPT_NAME!r}, 'exec'), {{'__name__': '__main__'}})\n"
    # What the function printed comes before its traceback, as in the official's pods: on a real
    # node stdout is a pipe (block-buffered) read apart from stderr.
    "except Exception: sys.stdout.flush(); traceback.print_exc(); sys.exit(1)"
)


class KpoAsyncPythonDecoratedOperator(DecoratedOperator, AsyncKubernetesPodOperator):
    custom_operator_name = "@task.kpo_async"
    template_fields: Sequence[str] = tuple(
        {"op_args", "op_kwargs", *AsyncKubernetesPodOperator.template_fields} - {"cmds", "arguments"}
    )
    shallow_copy_attrs: Sequence[str] = ("python_callable",)

    def __init__(self, *, python_callable: Callable[..., Any], use_dill: bool = False, **kwargs: Any) -> None:
        self.use_dill = use_dill
        kwargs.setdefault("name", f"k8s-airflow-pod-{python_callable.__name__}")
        super().__init__(python_callable=python_callable, cmds=["python", "-c", RUN_SCRIPT], **kwargs)

    def execute(self, context: Context) -> Any:
        self.add_script()
        return super().execute(context)

    def add_script(self) -> None:
        """Put the program (the function, its pickled arguments, the XCom write) in the pod's env."""
        pickler: Any = importlib.import_module("dill" if self.use_dill else "pickle")
        arguments = base64.b64encode(pickler.dumps((list(self.op_args), dict(self.op_kwargs)), protocol=4))
        output = XCOM_RETURN_FILE if self.do_xcom_push else None
        program = [
            f"import base64, json, os, {pickler.__name__}",
            self.get_python_source(),  # type: ignore[no-untyped-call]
            f"args, kwargs = {pickler.__name__}.loads(base64.b64decode({arguments.decode()!r}))",
            f"result = {self.python_callable.__name__}(*args, **kwargs)",
            f"if {output!r}:",
            f"    os.makedirs(os.path.dirname({output!r}), exist_ok=True)",
            f"    with open({output!r}, 'w') as file:",
            "        json.dump(result, file)",
        ]
        script = base64.b64encode("\n".join(program).encode()).decode()
        env: Any = getattr(self, "env_vars", None)  # the official operator's dict, or a list of env vars
        entry = {"name": SCRIPT_ENV, "value": script}
        self.env_vars = {**env, SCRIPT_ENV: script} if isinstance(env, dict) else [*(env or []), entry]


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

    def execute(self, context: Context) -> Any:
        # The op_kwargs join the context, as with Airflow's context_merge (a dict update).
        context.update(self.op_kwargs)  # type: ignore[typeddict-item]
        function = self.python_callable
        command = function(*self.op_args, **determine_kwargs(function, self.op_args, context))
        if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
            raise TypeError(f"{function.__name__} must return a list of strings, not {command!r}")
        if not command:
            raise ValueError(f"{function.__name__} returned an empty command")
        self.cmds, self.arguments = ([], command) if self.args_only else (command, [])
        self.render_template_fields(context)  # Jinja in the returned command, as the official
        return super().execute(context)


#: ``@task.kpo_async``: the decorated function runs in the pod; its return value is the XCom.
kpo_async_task = partial(task_decorator_factory, decorated_operator_class=KpoAsyncPythonDecoratedOperator)
#: ``@task.kpo_async_cmd``: the decorated function returns the command the pod runs.
kpo_async_cmd_task = partial(task_decorator_factory, decorated_operator_class=KpoAsyncCmdDecoratedOperator)
