"""``kpo-async bench``: triggerer load of N deferred pods, our PodTrigger vs the official trigger.

    kpo-async bench [--pods 200] [--duration 120] [--design ours|official|both] [--get-logs]
                    [--sweep 100,500,1000] [--official-cap 500] [--plot FILE] [--json]
                    [--cluster-kubeconfig PATH]

For each design, on a fresh embedded cluster (``python -m kpo_async.testing.sim`` as its own process) or on
an already-running cluster (``--cluster-kubeconfig``):

1. N pods are created as the operator would build them (``kpo_async.pod_builder.build_pod`` with one
   task identity per pod), each running until a common end time plus a random spread, then exiting 0;
2. a mini triggerer (``kpo_async.testing.bench.mini_triggerer``, its own process) runs the N triggers
   from their serialized form in one asyncio loop, as Airflow's triggerer does;
3. the steady state is measured over ``--duration`` seconds ending just before the first pod ends
   (all pods running, startup excluded): API requests by verb (the simulator's counter, minus the
   benchmark's own observer watch; client-side with an aiohttp TraceConfig on a real cluster), TCP
   connections opened, CPU seconds, event-loop lag, resident memory per deferred pod;
4. then every pod ends; the latency from its base container's termination (as published by the API
   server, timestamped by an independent watch) to its TriggerEvent is measured, and each event is
   checked (status success, exit code 0, the right pod).

See docs/scale.md for the method, results and caveats.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from kpo_async.testing.bench.cluster import (
    CreatedPod,
    Observer,
    SimProcess,
    create_pods,
    delete_pods,
    run_selector,
)
from kpo_async.testing.bench.common import (
    counter_delta,
    fmt_num,
    loadavg,
    percentile,
    split_log_requests,
)

DESIGNS = ("ours", "official")
#: Seconds between the end of the measured window and the first pod's end.
END_MARGIN = 3.0


def auto_warmup(design: str, n: int) -> float:
    """Time from the end of pod creation to the start of the measured window."""
    if design == "ours":
        return 20.0 + n / 250  # 24 s at 1,000; 40 s at 5,000
    return 30.0 + n / 10  # the official trigger's startup is CPU-bound: 50 s at 200, 80 s at 500


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kpo-async bench",
        description=(
            "Measure a triggerer's load (CPU, memory, API requests, event latency) while N pods are "
            "deferred to it, for kpo-async's trigger and for the official provider's (which needs "
            "the bench extra: pip install 'kpo-async[bench]'). Runs on a fresh embedded cluster, "
            "or on a running cluster with --cluster-kubeconfig."
        ),
        epilog='How to read the results: "Running many pods" in the kpo-async documentation.',
    )
    p.add_argument("--pods", type=int, default=200, help="deferred pods (triggers) per run (default 200)")
    p.add_argument(
        "--duration", type=float, default=120.0, help="seconds of measured steady state (default 120)"
    )
    p.add_argument(
        "--design",
        choices=("ours", "official", "both"),
        default="both",
        help="which trigger to measure: kpo-async's (ours), the official provider's, or both (default)",
    )
    p.add_argument("--get-logs", action="store_true", help="get_logs=True (ours streams logs)")
    p.add_argument("--log-rate", type=float, default=1.0, help="log lines per second per pod with --get-logs")
    p.add_argument(
        "--official-logging-interval",
        type=int,
        default=None,
        help="the official trigger's logging_interval (default None: no log reads on the triggerer)",
    )
    p.add_argument(
        "--ours-fallback-poll",
        type=float,
        default=30.0,
        help="PodTrigger fallback_poll_seconds (the operator passes max(poll_interval, 30) = 30)",
    )
    p.add_argument("--xcom", action="store_true", help="do_xcom_push=True for ours (sidecar + exec read)")
    p.add_argument("--sweep", help="comma-separated N values, e.g. 100,500,1000 (overrides --pods)")
    p.add_argument(
        "--official-cap",
        type=int,
        default=500,
        help="run the official design at min(N, cap) pods; ratios are per pod-minute (default 500)",
    )
    p.add_argument("--warmup", type=float, help="seconds from pods created to window start (default: auto)")
    p.add_argument("--end-spread", type=float, default=20.0, help="pods end uniformly over this many seconds")
    p.add_argument("--tail-timeout", type=float, default=240.0, help="max wait for events after the last end")
    p.add_argument("--cluster-kubeconfig", help="use this running cluster instead of a fresh simulator")
    p.add_argument(
        "--namespace",
        help="namespace of the bench pods (default: 'default'; with --cluster-kubeconfig the context's "
        "namespace, else 'default')",
    )
    p.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() in the mini triggerer after its imports (a triggerer-side mitigation of GC pauses)",
    )
    p.add_argument("--no-greenback", action="store_true", help="skip the triggerer's greenback portal")
    p.add_argument(
        "--client-count",
        action="store_true",
        help="also count requests client-side (always on real clusters)",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    p.add_argument("--json-out", help="also write the full results (JSON) to this file")
    p.add_argument("--plot", help="write a PNG of CPU and requests vs N (most useful with --sweep)")
    p.add_argument("--replot", nargs="+", metavar="JSON", help="only plot/print saved --json-out results")
    p.add_argument(
        "--keep-workdir", action="store_true", help="keep the working directory (logs, kubeconfig) afterwards"
    )
    return p


# --- one run ----------------------------------------------------------------------------------------


def _write_json(path: str, data: Any) -> None:
    with open(path, "w") as handle:
        json.dump(data, handle)


def _read_json(path: str) -> Any:
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def _tail(path: str, size: int = 3000) -> str:
    with open(path, "rb") as handle:
        return handle.read()[-size:].decode(errors="replace")


def _child_output_files(workdir: str) -> tuple[Any, Any]:
    return open(os.path.join(workdir, "child.stdout"), "wb"), open(
        os.path.join(workdir, "child.stderr"), "wb"
    )


def _child_env(workdir: str) -> dict[str, str]:
    env = dict(os.environ)
    env["AIRFLOW_HOME"] = os.path.join(workdir, "airflow")
    # Triggers' kwargs are stored encrypted in production; use a key so the round trip is real.
    env["AIRFLOW__CORE__FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    env.pop("KUBECONFIG", None)
    return env


async def _sample_sim_cpu(sim: SimProcess | None, marks: dict[str, float], out: dict[str, float]) -> None:
    if sim is None:
        return
    for label, when in sorted(marks.items(), key=lambda kv: kv[1]):
        await asyncio.sleep(max(0.0, when - time.time()))
        out[label] = sim.cpu_seconds()
        out[label + "_rss_mb"] = sim.rss_mb()


async def run_design(design: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix=f"kpo-async-bench-{design}-{n}-")
    sim: SimProcess | None = None if args.cluster_kubeconfig else SimProcess(workdir)
    try:
        return await _run_design(design, n, args, workdir, sim)
    finally:
        if sim is not None:
            await sim.stop()
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


async def _run_design(
    design: str, n: int, args: argparse.Namespace, workdir: str, sim: SimProcess | None
) -> dict[str, Any]:
    from kpo_async.clients import create_client
    from kpo_async.connection import ClusterRef

    load_before = loadavg()
    kubeconfig = args.cluster_kubeconfig if sim is None else await sim.start()
    client = await create_client(ClusterRef(config_file=kubeconfig))
    run_id = f"bench-{design}-{n}-{int(time.time())}"
    observer = Observer(client, args.namespace, run_selector(run_id))
    notes: list[str] = []
    pods: list[CreatedPod] = []
    try:
        observer.start()
        await asyncio.wait_for(observer.synced.wait(), 60)
        t0 = time.time()
        create_budget = 5.0 + n / 150
        warmup = args.warmup if args.warmup is not None else auto_warmup(design, n)
        end_at = t0 + create_budget + warmup + args.duration + END_MARGIN
        pods = await create_pods(
            client,
            args.namespace,
            run_id,
            n,
            end_at=end_at,
            end_spread=args.end_spread,
            log_rate=args.log_rate if args.get_logs else 0.0,
            xcom=args.xcom and design == "ours",
            kwok_pending=0.5 if args.cluster_kubeconfig else 0.0,
        )
        t_created = time.time()
        window_end = end_at - END_MARGIN
        window_start = window_end - args.duration
        if t_created > t0 + create_budget:
            notes.append(f"pod creation took {t_created - t0:.1f}s (> budget {create_budget:.1f}s)")
        if window_start < t_created + 10:
            window_start = t_created + 10
            notes.append(f"steady window shortened to {window_end - window_start:.0f}s")
        marks = {"window_start": window_start, "window_end": window_end}
        deadline = end_at + args.end_spread + args.tail_timeout
        output = os.path.join(workdir, "result.json")
        child_config = {
            "design": design,
            "kubeconfig": kubeconfig,
            "namespace": args.namespace,
            "pods": [{"name": p.name, "uid": p.uid} for p in pods],
            "get_logs": bool(args.get_logs),
            "xcom": bool(args.xcom and design == "ours"),
            "official_logging_interval": args.official_logging_interval,
            "greenback": not args.no_greenback,
            "gc_freeze": bool(args.gc_freeze),
            "ours_fallback_poll": args.ours_fallback_poll,
            "count_client_requests": bool(args.client_count or args.cluster_kubeconfig),
            "sim_stats": sim is not None,
            "marks": marks,
            "deadline": deadline,
            "output": output,
        }
        config_path = os.path.join(workdir, "child.json")
        _write_json(config_path, child_config)
        out, err = _child_output_files(workdir)
        with out, err:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kpo_async.testing.bench.mini_triggerer",
                config_path,
                stdout=out,
                stderr=err,
                env=_child_env(workdir),
            )
            sim_cpu: dict[str, float] = {}
            sampler = asyncio.create_task(_sample_sim_cpu(sim, marks, sim_cpu))
            load_window: list[float] = []

            async def load_at_window_end() -> None:
                await asyncio.sleep(max(0.0, window_end - time.time()))
                load_window.extend(loadavg())

            load_task = asyncio.create_task(load_at_window_end())
            try:
                rc = await asyncio.wait_for(child.wait(), deadline - time.time() + 120)
            finally:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
                sampler.cancel()
                load_task.cancel()
        result = _read_json(output) if rc == 0 else None
        if result is None:
            tail = _tail(os.path.join(workdir, "child.stderr"))
            raise RuntimeError(f"the mini triggerer failed (rc={rc}); stderr tail:\n{tail}")
        # Terminations are published before the events they cause; give the observer a moment.
        for _ in range(50):
            if len(observer.terminated_at) >= n:
                break
            await asyncio.sleep(0.1)
        metrics = analyze(design, n, result, pods, observer, sim_cpu, args, source="sim" if sim else "client")
        metrics["notes"] = notes + metrics.get("notes", [])
        metrics["load_before"] = load_before
        metrics["load_window_end"] = load_window
        metrics["load_after"] = loadavg()
        metrics["workdir"] = workdir
        metrics["options"] = {
            key: child_config[key]
            for key in (
                "get_logs",
                "xcom",
                "official_logging_interval",
                "greenback",
                "gc_freeze",
                "ours_fallback_poll",
            )
        }
        metrics["options"]["end_spread"] = args.end_spread
        metrics["options"]["max_log_streams_env"] = os.environ.get("AIRFLOW__KPO_ASYNC__MAX_LOG_STREAMS")
        metrics["timeline"] = {
            "create_seconds": round(t_created - t0, 2),
            "warmup_seconds": round(window_start - t_created, 2),
            "window_seconds": round(window_end - window_start, 2),
            "child_start_after_create_seconds": round(result["t_start"] - t_created, 2),
            "triggers_created_seconds": round(result["t_created"] - result["t_start"], 2),
        }
        return metrics
    finally:
        await observer.stop()
        if args.cluster_kubeconfig and pods:
            await delete_pods(client, args.namespace, run_id)
        await client.close()


def _requests(sample_a: dict, sample_b: dict, observer: Observer, source: str) -> tuple[dict[str, int], int]:
    if source == "sim":
        delta = counter_delta(sample_b["sim"]["requests"], sample_a["sim"]["requests"])
        own = observer.own_requests_between(sample_a["t"], sample_b["t"])
        for key, count in own.items():
            delta[key] = delta.get(key, 0) - count
        delta = {k: v for k, v in delta.items() if v}
        connections = sample_b["sim"]["connections_opened"] - sample_a["sim"]["connections_opened"]
        # minus the connections of the mini triggerer's own stats client
        connections -= sample_b.get("control_connections", 0) - sample_a.get("control_connections", 0)
        return delta, connections
    delta = counter_delta(sample_b["client"]["requests"], sample_a["client"]["requests"])
    connections = sample_b["client"]["connections_opened"] - sample_a["client"]["connections_opened"]
    return delta, connections


def _per(counts: dict[str, int], pod_minutes: float) -> dict[str, float]:
    return {k: v / pod_minutes for k, v in counts.items()} if pod_minutes > 0 else {}


def analyze(
    design: str,
    n: int,
    result: dict[str, Any],
    pods: list[CreatedPod],
    observer: Observer,
    sim_cpu: dict[str, float],
    args: argparse.Namespace,
    *,
    source: str,
) -> dict[str, Any]:
    samples = result["samples"]
    notes: list[str] = []
    base, ws, we, end = (
        samples["baseline"],
        samples.get("window_start"),
        samples.get("window_end"),
        samples["end"],
    )
    if ws is None or we is None:
        raise RuntimeError("the mini triggerer never reached the measured window (did it start too late?)")
    window_s = we["t"] - ws["t"]
    pod_minutes = n * window_s / 60
    requests, connections = _requests(ws, we, observer, source)
    api, logs = split_log_requests(requests)
    cpu = we["cpu"] - ws["cpu"]
    lags = [lag for t, lag in result["lags"] if ws["t"] <= t < we["t"]]
    events = {int(i): (t, payload) for i, (t, payload) in result["events"].items()}
    early = sum(1 for t, _ in events.values() if t < we["t"])
    if early:
        notes.append(f"{early} triggers fired before the window ended (see their messages)")

    # Completion: latency and correctness.
    latencies: list[float] = []
    wrong: list[str] = []
    missing_term = 0
    for pod in pods:
        event = events.get(pod.index)
        if event is None:
            wrong.append(f"{pod.name}: no event ({result['errors'].get(str(pod.index), 'timed out')})")
            continue
        t_event, payload = event
        term = observer.terminated_at.get(pod.name)
        if term is None:
            missing_term += 1
        else:
            latencies.append(t_event - term)
        problem = _check_event(design, pod, payload, observer, xcom=args.xcom and design == "ours")
        if problem:
            wrong.append(f"{pod.name}: {problem}")
    if missing_term:
        notes.append(f"{missing_term} terminations were not seen by the observer")

    # The whole trigger lifetime (startup + steady + completion).
    life_requests, life_connections = _requests(base, end, observer, source)
    life_api, life_logs = split_log_requests(life_requests)
    life_pod_minutes = (
        sum((events[p.index][0] if p.index in events else result["t_end"]) - result["t_start"] for p in pods)
        / 60
    )
    tail_requests, _ = _requests(we, end, observer, source)
    tail_api, _ = split_log_requests(tail_requests)

    steady = {
        "window_seconds": round(window_s, 1),
        "api_requests": api,
        "log_requests": logs,
        "api_requests_per_pod_minute": round(sum(api.values()) / pod_minutes, 4),
        "api_requests_per_pod_minute_by_verb": {k: round(v, 4) for k, v in _per(api, pod_minutes).items()},
        "log_requests_per_pod_minute": round(sum(logs.values()) / pod_minutes, 4),
        "connections_opened": connections,
        "connections_per_pod_minute": round(connections / pod_minutes, 4),
        "cpu_seconds": round(cpu, 3),
        "cpu_seconds_per_pod_minute": cpu / pod_minutes,
        "cpu_percent_of_core": round(100 * cpu / window_s, 2),
        "lag_p50_ms": round(1000 * percentile(lags, 50), 2),
        "lag_p99_ms": round(1000 * percentile(lags, 99), 2),
        "lag_max_ms": round(1000 * max(lags), 2) if lags else None,
        "lag_samples": len(lags),
        "rss_baseline_mb": round(base["rss_kib"] / 1024, 1),
        "rss_mb": round(we["rss_kib"] / 1024, 1),
        "rss_kib_per_pod": round((we["rss_kib"] - base["rss_kib"]) / n, 2),
        "tasks": we["tasks"],
    }
    if source == "sim":
        steady["open_watches"] = we["sim"].get("open_watches")
        steady["open_log_streams"] = we["sim"].get("open_log_streams")
        if "window_start" in sim_cpu and "window_end" in sim_cpu:
            steady["sim_cpu_percent_of_core"] = round(
                100 * (sim_cpu["window_end"] - sim_cpu["window_start"]) / window_s, 2
            )
            steady["sim_rss_mb"] = round(sim_cpu["window_end_rss_mb"], 1)
    all_lags = [lag for _, lag in result["lags"]]
    gc_all = result.get("gc") or []
    gc_window = [(g, d) for t, g, d in gc_all if ws["t"] <= t < we["t"]]
    if "gc_objects" in we and "gc_objects" in base:
        steady["gc_objects_per_pod"] = round((we["gc_objects"] - base["gc_objects"]) / n, 1)
        steady["gc_objects"] = we["gc_objects"]
    steady["gc_full_collections"] = sum(1 for g, _ in gc_window if g == 2)
    steady["gc_pause_max_ms"] = round(1000 * max((d for _, d in gc_window), default=0.0), 1)
    completion = {
        "events": len(events),
        "correct": n - len(wrong),
        "wrong_or_missing": wrong[:20],
        "wrong_or_missing_count": len(wrong),
        "latency_p50_ms": round(1000 * percentile(latencies, 50), 1),
        "latency_p99_ms": round(1000 * percentile(latencies, 99), 1),
        "latency_max_ms": round(1000 * max(latencies), 1) if latencies else None,
        "latency_samples": len(latencies),
        "api_requests_after_window_per_pod": round(sum(tail_api.values()) / n, 3),
        "api_requests_after_window": tail_api,
    }
    lifetime = {
        "pod_minutes": round(life_pod_minutes, 1),
        "api_requests": life_api,
        "log_requests": life_logs,
        "api_requests_per_pod": round(sum(life_api.values()) / n, 3),
        "api_requests_per_pod_minute": round(sum(life_api.values()) / life_pod_minutes, 4),
        "connections_opened": life_connections,
        "cpu_seconds": round(end["cpu"] - base["cpu"], 2),
        "cpu_seconds_per_pod_minute": (end["cpu"] - base["cpu"]) / life_pod_minutes,
        "rss_peak_mb": round(end["hwm_kib"] / 1024, 1),
        "lag_p99_ms_whole_run": round(1000 * percentile(all_lags, 99), 2),
        "lag_max_ms_whole_run": round(1000 * max(all_lags), 2) if all_lags else None,
        "gc_full_collections": sum(1 for _, g, _ in gc_all if g == 2),
        "gc_pause_max_ms": round(1000 * max((d for _, _, d in gc_all), default=0.0), 1),
        "gc_pause_total_s": round(sum(d for _, _, d in gc_all), 2),
        "gc_objects_at_end": result.get("gc_objects_at_end"),
    }
    if source == "sim" and "client" in base and "client" in end:
        # cross-check: the same lifetime counted on the client side (aiohttp TraceConfig)
        lifetime["client_side_requests"], lifetime["client_side_connections"] = _requests(
            base, end, observer, "client"
        )
    return {
        "design": design,
        "n": n,
        "count_source": source,
        "get_logs": bool(args.get_logs),
        "steady": steady,
        "completion": completion,
        "lifetime": lifetime,
        "timed_out": result["timed_out"],
        "notes": notes,
    }


def _check_event(
    design: str, pod: CreatedPod, payload: dict[str, Any], observer: Observer, *, xcom: bool
) -> str:
    if payload.get("status") != "success":
        return f"status {payload.get('status')!r}: {payload.get('message', '')[:200]}"
    if design == "ours":
        if payload.get("pod_name") != pod.name or payload.get("pod_uid") != pod.uid:
            return f"event for {payload.get('pod_name')}/{payload.get('pod_uid')}"
        if payload.get("exit_code") != 0:
            return f"exit code {payload.get('exit_code')}"
        if xcom and payload.get("xcom") != {"pod": pod.index}:
            return f"xcom {payload.get('xcom')!r}"
    elif payload.get("name") != pod.name:
        return f"event for {payload.get('name')}"
    if observer.exit_codes.get(pod.name) not in (0, None):
        return f"container exit code {observer.exit_codes.get(pod.name)}"
    return ""


# --- reporting --------------------------------------------------------------------------------------


ROWS: list[tuple[str, str, str]] = [
    # (label, section, key)
    ("API requests / pod-minute (no logs)", "steady", "api_requests_per_pod_minute"),
    ("log requests / pod-minute", "steady", "log_requests_per_pod_minute"),
    ("TCP connections / pod-minute", "steady", "connections_per_pod_minute"),
    ("CPU s / pod-minute", "steady", "cpu_seconds_per_pod_minute"),
    ("CPU % of one core", "steady", "cpu_percent_of_core"),
    ("event-loop lag p50 ms", "steady", "lag_p50_ms"),
    ("event-loop lag p99 ms", "steady", "lag_p99_ms"),
    ("RSS KiB / deferred pod", "steady", "rss_kib_per_pod"),
    ("RSS MB (baseline -> steady)", "steady", "rss_mb"),
    ("terminate->event p50 ms", "completion", "latency_p50_ms"),
    ("terminate->event p99 ms", "completion", "latency_p99_ms"),
    ("terminate->event max ms", "completion", "latency_max_ms"),
    ("events correct", "completion", "correct"),
    ("lifetime API requests / pod", "lifetime", "api_requests_per_pod"),
    ("lifetime API req / pod-minute", "lifetime", "api_requests_per_pod_minute"),
    ("lifetime CPU s / pod-minute", "lifetime", "cpu_seconds_per_pod_minute"),
]
RATIO_KEYS = {
    "api_requests_per_pod_minute",
    "connections_per_pod_minute",
    "cpu_seconds_per_pod_minute",
    "rss_kib_per_pod",
    "latency_p50_ms",
    "latency_p99_ms",
    "lag_p99_ms",
}


def _cell(run: dict[str, Any] | None, section: str, key: str) -> str:
    if run is None:
        return "-"
    value = run[section].get(key)
    if key == "rss_mb":
        return f"{run['steady']['rss_baseline_mb']} -> {value}"
    if key == "correct":
        return f"{value}/{run['n']}"
    return fmt_num(value)


def _ratio(a: dict | None, b: dict | None, section: str, key: str) -> str:
    if a is None or b is None or key not in RATIO_KEYS:
        return ""
    x, y = a[section].get(key), b[section].get(key)
    if x is None or y in (None, 0):
        return ""
    ratio = x / y
    return f"{ratio * 100:.3g}%" if ratio < 1 else f"{ratio:.3g}x"


def print_report(runs: list[dict[str, Any]], requested: list[int], cap: int) -> None:
    by_key = {(r["design"], r["n"]): r for r in runs}
    for n in requested:
        ours = by_key.get(("ours", n))
        official = by_key.get(("official", min(n, cap))) or by_key.get(("official", n))
        header_official = f"official (N={official['n']})" if official else "official"
        print()
        print(
            f"== N = {n} deferred pods"
            + (f" (official capped at {official['n']})" if official and official["n"] != n else "")
        )
        for run in (ours, official):
            if run is None:
                continue
            t = run["timeline"]
            print(
                f"   {run['design']:>8}: window {run['steady']['window_seconds']}s after "
                f"{t['warmup_seconds']}s warm-up (create {t['create_seconds']}s); load avg before "
                f"{run['load_before']} window-end {run['load_window_end']}; "
                f"counts from the {run['count_source']}"
                + (
                    f"; sim CPU {run['steady'].get('sim_cpu_percent_of_core')}%"
                    if run["count_source"] == "sim"
                    else ""
                )
            )
            for note in run["notes"]:
                print(f"            note: {note}")
        print(f"   {'metric':<34} {'ours':>16} {header_official:>20} {'ours/official':>14}")
        for label, section, key in ROWS:
            print(
                f"   {label:<34} {_cell(ours, section, key):>16} {_cell(official, section, key):>20} "
                f"{_ratio(ours, official, section, key):>14}"
            )
        for run in (ours, official):
            if run is None:
                continue
            verbs = run["steady"]["api_requests_per_pod_minute_by_verb"]
            logs = run["steady"]["log_requests"]
            print(
                f"   {run['design']} steady requests/pod-minute by verb: "
                + (", ".join(f"{k} {fmt_num(v)}" for k, v in verbs.items()) or "none")
                + (f"; log requests in window: {logs}" if logs else "")
            )
            print(
                f"   {run['design']} lifetime requests: {run['lifetime']['api_requests']}"
                + (f" + logs {run['lifetime']['log_requests']}" if run["lifetime"]["log_requests"] else "")
            )
            for problem in run["completion"]["wrong_or_missing"][:5]:
                print(f"   {run['design']} WRONG: {problem}")
        if ours is not None and n >= 1000:
            _print_targets(ours, official)


def _print_targets(ours: dict[str, Any], official: dict[str, Any] | None) -> None:
    s, c = ours["steady"], ours["completion"]
    checks = []
    if official is not None and official["steady"]["api_requests_per_pod_minute"]:
        ratio = s["api_requests_per_pod_minute"] / official["steady"]["api_requests_per_pod_minute"]
        checks.append(("API requests (no logs) <= 1% of official", ratio <= 0.01, f"{ratio * 100:.3f}%"))
    checks.append(
        ("triggerer CPU <= 10% of one core", s["cpu_percent_of_core"] <= 10, f"{s['cpu_percent_of_core']}%")
    )
    checks.append(("event-loop lag p99 < 100 ms", s["lag_p99_ms"] < 100, f"{s['lag_p99_ms']} ms"))
    checks.append(("terminate->event p99 < 2 s", c["latency_p99_ms"] < 2000, f"{c['latency_p99_ms']} ms"))
    checks.append(("every event correct", c["correct"] == ours["n"], f"{c['correct']}/{ours['n']}"))
    print(f"   issue #5 targets at N={ours['n']}:")
    for label, ok, value in checks:
        print(f"     [{'PASS' if ok else 'FAIL'}] {label}: {value}")


def plot(runs: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 0.01  # zero on a log axis: drawn on the floor, labelled
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    styles = {
        "ours": ("tab:blue", "o", "kpo-async PodTrigger"),
        "official": ("tab:red", "s", "official KubernetesPodTrigger"),
    }
    for design in DESIGNS:
        points = sorted((r["n"], r) for r in runs if r["design"] == design and not r["get_logs"])
        if not points:
            continue
        color, marker, label = styles[design]
        ns = [n for n, _ in points]
        cpu = [max(r["steady"]["cpu_percent_of_core"], floor) for _, r in points]
        steady = [max(r["steady"]["api_requests_per_pod_minute"] * n, floor) for n, r in points]
        life = [r["lifetime"]["api_requests_per_pod_minute"] * n for n, r in points]
        lag = [max(r["steady"]["lag_p99_ms"], floor) for _, r in points]
        axes[0].plot(ns, cpu, marker=marker, color=color, label=label)
        axes[1].plot(ns, steady, marker=marker, color=color, label=f"{label}, steady window")
        axes[1].plot(
            ns, life, marker=marker, color=color, ls="--", mfc="none", label=f"{label}, whole lifetime"
        )
        axes[2].plot(ns, lag, marker=marker, color=color, label=label)
        for n, r in points:
            per = r["steady"]["api_requests_per_pod_minute"]
            axes[1].annotate(
                f"{per:.3g}/pod-min" if per else "0 in window",
                (n, max(per * n, floor)),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=7,
                color=color,
            )
            axes[0].annotate(
                f"{r['steady']['cpu_percent_of_core']:.3g}%",
                (n, max(r["steady"]["cpu_percent_of_core"], floor)),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=7,
                color=color,
            )
    axes[0].axhline(100, color="grey", lw=0.8, ls="--", label="one full core")
    axes[0].axhline(10, color="tab:green", lw=0.8, ls=":", label="target: 10% of a core")
    axes[0].set_title("triggerer CPU, steady state (incl. 0.33% lag probe)")
    axes[0].set_ylabel("% of one core (log scale)")
    axes[1].set_title("API requests excluding logs, all pods")
    axes[1].set_ylabel("requests per minute (log scale)")
    axes[2].axhline(100, color="tab:green", lw=0.8, ls=":", label="target: 100 ms")
    axes[2].set_title("event-loop lag p99, steady state")
    axes[2].set_ylabel("ms (log scale)")
    for ax, where in zip(axes, ("center right", "center left", "center right"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("deferred pods in one triggerer process (N, log scale)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc=where)
    official_ns = sorted({r["n"] for r in runs if r["design"] == "official"})
    fig.suptitle(
        "kpo-async bench, embedded cluster, 2-core shared machine; the official design was run at N = "
        f"{', '.join(map(str, official_ns)) or 'none'} (capped)",
        fontsize=10,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- entry point ------------------------------------------------------------------------------------


def _context_namespace(path: str) -> str:
    import yaml

    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    current = config.get("current-context")
    for entry in config.get("contexts") or []:
        if entry.get("name") == current:
            return (entry.get("context") or {}).get("namespace") or "default"
    return "default"


def _plan(args: argparse.Namespace) -> tuple[list[int], list[tuple[str, int]]]:
    sizes = [int(x) for x in args.sweep.split(",")] if args.sweep else [args.pods]
    designs = DESIGNS if args.design == "both" else (args.design,)
    plan: list[tuple[str, int]] = []
    for n in sizes:
        for design in designs:
            size = min(n, args.official_cap) if design == "official" else n
            if (design, size) not in plan:
                plan.append((design, size))
    return sizes, plan


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cluster_kubeconfig and not os.path.isfile(args.cluster_kubeconfig):
        print(
            f"kpo-async bench: --cluster-kubeconfig {args.cluster_kubeconfig} is not a file", file=sys.stderr
        )
        return 2
    if args.namespace is None:
        args.namespace = _context_namespace(args.cluster_kubeconfig) if args.cluster_kubeconfig else "default"
    if args.replot:
        runs: list[dict[str, Any]] = []
        for path in args.replot:
            with open(path) as handle:
                runs.extend(json.load(handle)["runs"])
        sizes = sorted({r["n"] for r in runs if r["design"] == "ours"}) or sorted({r["n"] for r in runs})
        print_report(runs, sizes, args.official_cap)
        if args.plot:
            plot(runs, args.plot)
            print(f"plot: {args.plot}")
        return 0
    sizes, plan = _plan(args)
    started = time.time()
    header = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "load_at_start": loadavg(),
    }
    if not args.json:
        print(
            f"kpo-async bench: plan {plan}; steady window {args.duration:.0f}s; {os.cpu_count()} CPUs; "
            f"load average {header['load_at_start']}",
            flush=True,
        )
    runs = []
    failures = []
    for design, n in plan:
        if not args.json:
            print(f"-- running {design} with N={n} ...", flush=True)
        try:
            run = asyncio.run(run_design(design, n, args))
        except Exception as exc:
            error = f"{exc.__class__.__name__}: {exc}"
            failures.append({"design": design, "n": n, "error": error})
            print(f"   {design} N={n} FAILED: {error[:2000]}", file=sys.stderr, flush=True)
            continue
        runs.append(run)
        if not args.json:
            s, c = run["steady"], run["completion"]
            print(
                f"   done: {s['api_requests_per_pod_minute']} API req/pod-min, "
                f"CPU {s['cpu_percent_of_core']}% of a core, lag p99 {s['lag_p99_ms']} ms, "
                f"{s['rss_kib_per_pod']} KiB/pod, "
                f"latency p99 {c['latency_p99_ms']} ms, {c['correct']}/{n} correct",
                flush=True,
            )
    header["load_at_end"] = loadavg()
    header["seconds"] = round(time.time() - started, 1)
    document = {"header": header, "runs": runs, "failures": failures}
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(document, handle, indent=2)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_report(runs, sizes, args.official_cap)
        print(f"\nload average at end {header['load_at_end']}; {header['seconds']}s in all")
    if args.plot:
        with contextlib.suppress(Exception):
            plot(runs, args.plot)
            if not args.json:
                print(f"plot: {args.plot}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
