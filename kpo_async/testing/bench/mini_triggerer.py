"""A mini triggerer: runs N deferred-pod triggers in one asyncio loop, the way Airflow's triggerer does.

    python -m kpo_async.testing.bench.mini_triggerer CONFIG.json

Runs as its own process so that its CPU time (``getrusage``) and memory (``/proc/self/status``)
are the triggers' alone. For each pod it builds the trigger as the operator would on a worker, takes
``serialize()`` (classpath + kwargs) through Airflow's own kwargs encryption and decoding
(``Trigger.encrypt_kwargs`` / ``_decrypt_kwargs`` / ``smart_decode_trigger_kwargs``), imports the
class by its classpath, instantiates it, and runs it as ``TriggerRunner.run_trigger`` does: a task
per trigger, a greenback portal, ``async for event in trigger.run()``, then ``cleanup()``.

A probe task sleeps 50 ms in a loop and records the overshoot (event-loop lag). At the wall-clock
times given in the config it snapshots CPU, memory, lag and the request counter (the simulator's,
over its control API, or a client-side count made with an aiohttp TraceConfig). The result is a
JSON file: the snapshots, the lag samples and every trigger's first event with its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import json
import logging
import os
import sys
import time
from typing import Any

from kpo_async.testing.bench.common import cpu_seconds, proc_status_kib
from kpo_async.testing.harness import drive

LAG_INTERVAL = 0.05


class ClientRequestCounter:
    """Counts requests and new TCP connections of every aiohttp session created in this process."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.connections_opened = 0
        self.inflight_log_streams = 0

    def install(self) -> None:
        import aiohttp

        from kpo_async.testing.sim.stats import classify

        trace = aiohttp.TraceConfig()

        async def on_request_start(session: Any, ctx: Any, params: Any) -> None:
            url = params.url
            if url.path.startswith("/sim/"):
                return
            key = classify(params.method, url.path, dict(url.query))
            self.requests[key] = self.requests.get(key, 0) + 1

        async def on_connection_create_end(session: Any, ctx: Any, params: Any) -> None:
            self.connections_opened += 1

        trace.on_request_start.append(on_request_start)
        trace.on_connection_create_end.append(on_connection_create_end)
        trace.freeze()
        original = aiohttp.ClientSession.__init__

        def patched(session: Any, *args: Any, trace_configs: Any = None, **kwargs: Any) -> None:
            original(session, *args, trace_configs=[*(trace_configs or []), trace], **kwargs)

        aiohttp.ClientSession.__init__ = patched  # type: ignore[method-assign]

    def snapshot(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "connections_opened": self.connections_opened}


def build_triggers(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """What the workers would have handed to the triggerer: (classpath, kwargs) per pod."""
    import yaml

    from kpo_async.testing.bench.common import official_trigger, our_trigger

    namespace = config["namespace"]
    if config["design"] == "ours":
        now = time.time()
        fallback = config.get("ours_fallback_poll", 30.0)
        triggers = [
            our_trigger(
                pod["name"],
                namespace,
                config["kubeconfig"],
                get_logs=config["get_logs"],
                xcom=config["xcom"],
                now=now,
                fallback_poll_seconds=fallback,
            )
            for pod in config["pods"]
        ]
    else:
        with open(config["kubeconfig"]) as handle:
            config_dict = yaml.safe_load(handle)
        start = datetime.datetime.now(tz=datetime.timezone.utc)
        triggers = [
            official_trigger(
                pod["name"],
                namespace,
                config_dict,
                get_logs=config["get_logs"],
                logging_interval=config.get("official_logging_interval"),
                start=start,
            )
            for pod in config["pods"]
        ]
    return [trigger.serialize() for trigger in triggers]


def _summary(payload: dict[str, Any]) -> dict[str, Any]:
    keep = ("status", "exit_code", "reason", "pod_uid", "pod_name", "name", "phase", "xcom")
    summary = {k: payload.get(k) for k in keep if k in payload}
    if payload.get("message"):
        summary["message"] = str(payload["message"])[:300]
    return summary


class MiniTriggerer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.lags: list[tuple[float, float]] = []
        self.events: dict[int, tuple[float, dict[str, Any]]] = {}
        self.errors: dict[int, str] = {}
        self.samples: dict[str, dict[str, Any]] = {}
        self.counter: ClientRequestCounter | None = None
        self.control: Any = None
        self.control_connections = 0
        self._stop = False
        #: (wall time at the end, generation, pause seconds) of every garbage collection.
        self.gc_pauses: list[tuple[float, int, float]] = []
        self._gc_started = 0.0

    def _gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.append((time.time(), info["generation"], time.perf_counter() - self._gc_started))

    def _control_session(self) -> Any:
        """SimControl's session, counting its own TCP connections (the simulator counts them too)."""
        import aiohttp

        trace = aiohttp.TraceConfig()

        async def opened(session: Any, ctx: Any, params: Any) -> None:
            self.control_connections += 1

        trace.on_connection_create_end.append(opened)
        headers = self.control._headers
        return aiohttp.ClientSession(headers=headers, trace_configs=[trace])

    async def _lag_probe(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop:
            start = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            self.lags.append((time.time(), loop.time() - start - LAG_INTERVAL))

    async def snapshot(self, label: str) -> None:
        sample: dict[str, Any] = {
            "t": time.time(),
            "cpu": cpu_seconds(),
            "rss_kib": proc_status_kib("VmRSS"),
            "hwm_kib": proc_status_kib("VmHWM"),
            "lag_index": len(self.lags),
            "events": len(self.events),
            "tasks": len(asyncio.all_tasks()),
        }
        if self.counter is not None:
            sample["client"] = self.counter.snapshot()
        if self.control is not None:
            try:
                sample["sim"] = await self.control.stats()
                sample["control_connections"] = self.control_connections
            except Exception as exc:  # the measurement must not kill the run
                sample["sim_error"] = repr(exc)
        if label in ("baseline", "window_end"):
            sample["gc_objects"] = len(gc.get_objects())  # after the CPU reading: not in the window
            self._trace_memory(label)
        self.samples[label] = sample

    def _trace_memory(self, label: str) -> None:
        """With KPO_BENCH_TRACEMALLOC=FILE: where the memory added between the baseline and the
        window's end was allocated (Python allocations only; OpenSSL's are not seen)."""
        import tracemalloc

        path = os.environ.get("KPO_BENCH_TRACEMALLOC")
        if not path:
            return
        if label == "baseline":
            tracemalloc.start(1)
            self._memory_baseline = tracemalloc.take_snapshot()
            return
        diff = tracemalloc.take_snapshot().compare_to(self._memory_baseline, "lineno")
        n = max(1, len(self.config["pods"]))
        with open(path, "w") as out:
            out.write(f"KiB per pod, by allocating line ({n} pods)\n")
            out.write(f"{sum(d.size_diff for d in diff) / 1024 / n:8.2f} total\n")
            for stat in diff[:60]:
                out.write(f"{stat.size_diff / 1024 / n:8.2f} {stat.count_diff / n:7.2f} {stat.traceback}\n")

    async def snapshot_at(self, when: float, label: str) -> None:
        await asyncio.sleep(max(0.0, when - time.time()))
        await self.snapshot(label)

    async def run_trigger(self, index: int, trigger: Any) -> None:
        """TriggerRunner.run_trigger, minus the DB, spans and log routing."""
        if self.config["greenback"]:
            import greenback

            await greenback.ensure_portal()
        try:
            await drive(
                trigger, lambda payload: self.events.setdefault(index, (time.time(), _summary(payload)))
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.errors[index] = f"{exc.__class__.__name__}: {exc}"[:500]

    async def run(self) -> dict[str, Any]:
        config = self.config
        from airflow._shared.module_loading import import_string
        from airflow.models.trigger import Trigger
        from airflow.serialization.decoders import smart_decode_trigger_kwargs

        if config["count_client_requests"]:
            self.counter = ClientRequestCounter()
            self.counter.install()
        if config["sim_stats"]:
            from kpo_async.testing.sim.control import SimControl

            self.control = SimControl(config["kubeconfig"])
            self.control._session = self._control_session()
            await self.control.stats()  # open its keep-alive connection before the baseline

        t_build = time.time()
        # The worker's side: serialize and encrypt (not part of the triggerer's measured work).
        workloads = [
            (classpath, Trigger.encrypt_kwargs(kwargs)) for classpath, kwargs in build_triggers(config)
        ]
        build_seconds = time.time() - t_build
        gc.collect()
        if config.get("gc_freeze"):
            gc.freeze()  # what a triggerer could do once its imports are done
        gc.callbacks.append(self._gc_callback)
        await self.snapshot("baseline")
        probe = asyncio.create_task(self._lag_probe())
        marks = [
            asyncio.create_task(self.snapshot_at(when, label)) for label, when in config["marks"].items()
        ]

        t_start = time.time()
        classes: dict[str, Any] = {}
        tasks: list[asyncio.Task[None]] = []
        for index, (classpath, encrypted) in enumerate(workloads):
            await asyncio.sleep(0)  # create_triggers yields between triggers too
            cls = classes.get(classpath) or classes.setdefault(classpath, import_string(classpath))
            kwargs = {
                k: smart_decode_trigger_kwargs(v) for k, v in Trigger._decrypt_kwargs(encrypted).items()
            }
            trigger = cls(**kwargs)
            trigger.trigger_id = index
            trigger.triggerer_job_id = 1
            trigger.timeout_after = None
            tasks.append(asyncio.create_task(self.run_trigger(index, trigger), name=f"trigger-{index}"))
        t_created = time.time()
        await self.snapshot("started")
        del workloads

        deadline = config["deadline"]
        pending = set(tasks)
        while pending and time.time() < deadline:
            _done, pending = await asyncio.wait(pending, timeout=min(5.0, max(0.1, deadline - time.time())))
        await self.snapshot("end")
        t_end = time.time()
        timed_out = len(pending)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=30)
        self._stop = True
        for task in marks:
            task.cancel()
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
        if self.control is not None:
            await self.control.close()
        return {
            "design": config["design"],
            "n": len(config["pods"]),
            "build_seconds": round(build_seconds, 3),
            "t_start": t_start,
            "t_created": t_created,
            "t_end": t_end,
            "timed_out": timed_out,
            "samples": self.samples,
            "lags": self.lags,
            "gc": self.gc_pauses,
            "gc_objects_at_end": len(gc.get_objects()),
            "events": {str(i): [t, payload] for i, (t, payload) in self.events.items()},
            "errors": {str(i): e for i, e in self.errors.items()},
        }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as handle:
        config = json.load(handle)
    logging.basicConfig(level=logging.WARNING)
    for name in ("airflow", "kpo_async", "triggers", "kubernetes_asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
    result = asyncio.run(MiniTriggerer(config).run())
    tmp = config["output"] + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle)
    os.replace(tmp, config["output"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
