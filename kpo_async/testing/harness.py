"""Drive an `AsyncKubernetesPodOperator` task the way Airflow does, for tests, the soak and the bench.

The worker side: `make_operator`, `FakeTI` + `context_for` (the few task-instance attributes the
operator reads), `submit` (``execute`` up to its ``TaskDeferred``), `stored_kwargs` (the trigger as
the metadata DB keeps it). The triggerer side: `trigger_from` (re-created from its stored form),
`drive` and `first_event` (``TriggerRunner.run_trigger``: iterate ``run()``, always ``cleanup()``),
`run_until` (until some lines are delivered, then a graceful or a hard triggerer stop),
`run_trigger` (a fresh event loop, as a triggerer process with only this trigger), `run_deferred`
(the trigger of a ``TaskDeferred``, from its stored form). Then `resume`
(``execute_complete`` with the event) and `run_task` for all of it. `SimProcess` starts the embedded
cluster in its own process. Around them: `pod_body` and `create_pods` (bare managed pods the
simulator runs by their behaviour annotation), `live_pods` (what a task left on the cluster) and
`wait_for` (poll until a condition holds, in a test's event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

#: The simulator's annotation describing a container by numbers (see `kpo_async.testing.sim.behavior`).
BEHAVIOR = "sim.kpo-async.io/behavior"


def behavior(**spec: Any) -> dict[str, str]:
    return {BEHAVIOR: json.dumps(spec)}


@dataclass
class FakeTI:
    """The few task-instance attributes the operator reads from its context."""

    task_id: str = "pod_task"
    try_number: int = 1
    dag_id: str = "test_dag"
    run_id: str = "manual__2026-11-27T00:00:00+00:00"
    map_index: int = -1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value") -> Any:
        return self.xcoms.get(key)


def context_for(ti: FakeTI) -> dict[str, Any]:
    return {"ti": ti, "task_instance": ti}


def make_operator(cluster: Any, name: str | None = None, **kwargs: Any) -> Any:
    """The operator on a cluster (anything with a `kubeconfig_path`, or a kubeconfig path); `name` is
    the task id and the pod's name (before its suffix)."""
    from kpo_async import AsyncKubernetesPodOperator

    name = name or kwargs.pop("name", None) or "pod-task"
    defaults: dict[str, Any] = {
        "task_id": name,
        "name": name,
        "image": "alpine:3.20",
        "kubernetes_conn_id": None,
        "config_file": _kubeconfig(cluster),
        "namespace": "default",
        "startup_timeout_seconds": 30,
    }
    return AsyncKubernetesPodOperator(**{**defaults, **kwargs})


def _kubeconfig(cluster: Any) -> str:
    return str(getattr(cluster, "kubeconfig_path", cluster))


def pod_body(name: str, **spec: Any) -> dict[str, Any]:
    """A bare pod of ours (the managed label) whose one container behaves as `spec` says."""
    from kpo_async.identity import MANAGED_LABEL

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {MANAGED_LABEL: "true"}, "annotations": behavior(**spec)},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "base", "image": "alpine:3.20"}]},
    }


async def create_pods(cluster: Any, bodies: list[dict[str, Any]], namespace: str = "default") -> None:
    """Create the pods through the process's shared client for the cluster (anything with a
    `kubeconfig_path`, or a kubeconfig path), as a trigger of this loop would reach it."""
    from kpo_async.clients import shared_client
    from kpo_async.connection import ClusterRef

    api = await shared_client(ClusterRef(config_file=_kubeconfig(cluster)))
    await asyncio.gather(*(api.core.create_namespaced_pod(namespace, body) for body in bodies))


def stored_pod(cluster: Any, name: str, namespace: str = "default") -> dict[str, Any] | None:
    """The pod as the embedded cluster stores it, also while it is being deleted; None once gone."""
    found = cluster.call(lambda: cluster.store.get("pods", namespace, name))
    return json.loads(found.raw) if found is not None else None


def live_pods(
    cluster: Any, prefix: str = "", *, selector: str | None = None, namespace: str = "default"
) -> list[dict[str, Any]]:
    """The pods that exist and are not being deleted, as JSON, whose name starts with `prefix` (and
    that match the label `selector`), read with the cluster's kubeconfig in a loop of their own."""
    from kubernetes_asyncio import client, config

    async def read() -> list[dict[str, Any]]:
        async with await config.new_client_from_config(config_file=_kubeconfig(cluster)) as api:
            pods = await client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector or "")
            return [
                api.sanitize_for_serialization(pod)
                for pod in pods.items
                if not pod.metadata.deletion_timestamp and pod.metadata.name.startswith(prefix)
            ]

    return asyncio.run(read())


async def wait_for(
    read: Callable[[], Awaitable[T] | T],
    done: Callable[[T], object] = bool,
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "the condition",
) -> T:
    """Call (and await, if it is a coroutine) `read()` every `interval` seconds until `done(value)`
    holds; the value. Fails the test (AssertionError naming `what` and the last value) after
    `timeout` seconds. The event loop runs meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if inspect.isawaitable(value):
            value = await value
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s; last value: {value!r}")
        await asyncio.sleep(interval)


def submit(op: Any, ti: FakeTI) -> Any:
    """`execute` up to its deferral; the `TaskDeferred` (it fails if the task did not defer)."""
    from kpo_async.airflow_compat import TaskDeferred

    try:
        op.execute(context_for(ti))
    except TaskDeferred as deferred:
        return deferred
    raise AssertionError(f"{op.task_id} did not defer")


def stored_kwargs(deferred: Any) -> tuple[str, dict[str, Any]]:
    """The trigger as the metadata DB holds it: classpath and JSON kwargs."""
    classpath, kwargs = deferred.trigger.serialize()
    return classpath, json.loads(json.dumps(kwargs))


def trigger_from(classpath: str, kwargs: dict[str, Any]) -> Any:
    """A trigger re-created from its stored form, as the triggerer does."""
    import importlib

    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))


async def drive(trigger: Any, on_event: Callable[[dict[str, Any]], Any]) -> None:
    """As Airflow's ``TriggerRunner.run_trigger``: iterate ``run()``, hand over each event's
    payload, and always give the trigger its ``cleanup()``."""
    try:
        async for event in trigger.run():
            on_event(event.payload)
    finally:
        with contextlib.suppress(Exception):
            await trigger.cleanup()


async def first_event(trigger: Any) -> dict[str, Any]:
    """Iterate `run()` to its first event, then `cleanup()` (the triggerer's finally), in this loop."""
    try:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")
    finally:
        await trigger.cleanup()


async def run_until(
    trigger: Any, delivered: Callable[[], bool], *, cleanup: bool = True, timeout: float = 30
) -> None:
    """Run the trigger until `delivered()` holds, then end it as a triggerer shutdown does: its task
    cancelled, then with `cleanup` (a graceful stop) its ``cleanup()``, without (a SIGKILL) nothing
    more; the process's shared watches and clients closed. Fails when the trigger fires an event
    first, ends, or `delivered()` does not hold within `timeout` seconds."""

    async def run() -> None:
        async for event in trigger.run():
            raise AssertionError(f"the pod finished before the shutdown: {event.payload}")

    task = asyncio.create_task(run())
    try:
        deadline = time.monotonic() + timeout
        while not delivered():
            assert not task.done(), task
            assert time.monotonic() < deadline, f"not delivered within {timeout} s"
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("the trigger ended before it was cancelled")
        if cleanup:
            await trigger.cleanup()
        await close_process_state()


async def close_process_state() -> None:
    """Stop the shared watches and close the shared clients of the running loop; the next
    trigger starts with a fresh log record budget, as in a new triggerer process."""
    from kpo_async.clients import close_shared_clients
    from kpo_async.log_records import shared_budget
    from kpo_async.watch import stop_shared_watchers

    await stop_shared_watchers()
    await close_shared_clients()
    shared_budget.cache_clear()


async def _alone(trigger: Any, timeout: float) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(first_event(trigger), timeout)
    finally:
        await close_process_state()
        left = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if left:  # asyncio.run would cancel them quietly: a leak must fail the test instead
            raise AssertionError(f"the trigger left asyncio tasks running: {sorted(left)}")


def run_trigger(trigger: Any, timeout: float = 60) -> dict[str, Any]:
    """Run a trigger to its first event in a fresh event loop (a triggerer with only this trigger),
    then stop the shared watches and clients; fails if any task is left running."""
    return asyncio.run(_alone(trigger, timeout))


def run_deferred(deferred: Any, timeout: float = 60) -> dict[str, Any]:
    """The triggerer's side of a `TaskDeferred`: its trigger re-created from the stored form, run to
    its first event (`run_trigger`)."""
    return run_trigger(trigger_from(*stored_kwargs(deferred)), timeout)


def resume(op: Any, ti: FakeTI, deferred: Any, timeout: float = 60) -> tuple[dict[str, Any], Any]:
    """Triggerer then worker: the event, and what `execute_complete` returned."""
    event = run_deferred(deferred, timeout)
    return event, getattr(op, deferred.method_name)(context_for(ti), event)


def run_task(op: Any, ti: FakeTI | None = None, timeout: float = 60) -> tuple[dict[str, Any], Any]:
    """Submit, defer, run the trigger as the triggerer would, finalize: the event and the result."""
    ti = ti or FakeTI(op.task_id)
    return resume(op, ti, submit(op, ti), timeout)


class SimProcess:
    """The embedded cluster in its own process (`python -m kpo_async.testing.sim`), started once it
    has written its kubeconfig. The one launcher of the simulator process.

    Its output goes to a file (`log_path`, by default ``<workdir>/sim.log``), never to a pipe that
    nobody reads, so a chatty run cannot block it. `new_session` puts it in its own process group.
    """

    def __init__(
        self,
        workdir: str,
        *extra_args: str,
        log_path: str | None = None,
        new_session: bool = False,
        timeout: float = 60.0,
    ) -> None:
        self.kubeconfig_path = os.path.join(workdir, "kubeconfig")
        self.log_path = log_path or os.path.join(workdir, "sim.log")
        command = [sys.executable, "-m", "kpo_async.testing.sim", "--kubeconfig", self.kubeconfig_path]
        with open(self.log_path, "w") as output:
            self.process = subprocess.Popen(
                [*command, *extra_args],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )
        deadline = time.monotonic() + timeout
        # "server:" comes right after "kubeconfig:": both are written once the cluster serves.
        while "\nserver:" not in "\n" + self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the simulator did not start ({self.process.returncode}):\n{self.output()[-2000:]}"
                )
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def server_url(self) -> str:
        """The cluster's API server URL (loopback), as it printed it."""
        for line in self.output().splitlines():
            if line.startswith("server:"):
                return line.split(":", 1)[1].strip()
        raise RuntimeError("the simulator has not printed its server URL")

    def output(self) -> str:
        with open(self.log_path, errors="replace") as output:
            return output.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def sim_process(workdir: str, *extra_args: str) -> Iterator[SimProcess]:
    process = SimProcess(workdir, *extra_args)
    try:
        yield process
    finally:
        process.stop()
