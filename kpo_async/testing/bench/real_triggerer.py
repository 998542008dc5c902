"""``make bench-triggerer``: N deferred pods with logs on, in a REAL ``airflow triggerer``; ours vs official.

    python -m kpo_async.testing.bench.real_triggerer [--pods 1000] [--log-rate 1] [--duration 120]
        [--design ours|official|both] [--official-cap 500] [--logging-interval 10]
        [--database postgres|sqlite]

Per design, on a fresh embedded cluster (its own process) and a fresh AIRFLOW_HOME:

1. N pods are created as the operator builds them, printing ``--log-rate`` lines per second (the
   simulator's behaviour annotation writes ``line <i>`` lazily) until a common end time plus a
   spread, then exiting 0;
2. ``airflow triggerer`` starts (supervisor + trigger runner subprocess, every log line through
   Airflow's own handlers into each task's trigger log file); a probe trigger measures the event
   loop's lag from inside it (`probe.LagProbeTrigger`), after importing the measured trigger's module;
3. N task instances are deferred as a worker's deferral does it (`deferrals`): ours with
   `PodTrigger` (get_logs=True, the operator's defaults), the official with `KubernetesPodTrigger`
   (get_logs=True, ``logging_interval``: its only way of reading logs on the triggerer);
4. over ``--duration`` seconds of steady state: CPU of every triggerer process, RSS, the lag
   probe's samples, API requests by verb (the simulator's counter, minus the observer's own);
5. then the pods end: terminate-to-event latency (an independent watch timestamps each
   termination; the event time is the triggerer's "Trigger fired event" line), log lines in the
   trigger log files vs lines printed (each pod's log read afterwards, with timestamps; a pod whose
   lines reached the file within 1.5 s is counted as streamed, otherwise as polled).

Figures are printed last, with ratios ours/official (per pod where N differs). docs/scale.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from kpo_async.testing.bench.airflow_env import BenchAirflow, cpu_delta
from kpo_async.testing.bench.cluster import Observer, SimProcess, create_pods, run_selector
from kpo_async.testing.bench.common import counter_delta, fmt_num, loadavg, percentile
from kpo_async.testing.bench.deferrals import PROBE_TASK

#: Seconds the triggerer's CPU is measured with only the probe trigger, before the pods defer.
BASELINE_SECONDS = 20.0
TRIGGER_MODULES = {"ours": "triggers.pod", "official": "airflow.providers.cncf.kubernetes.triggers.pod"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench-triggerer", description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--log-rate", type=float, default=1.0, help="lines per second per pod (default 1)")
    p.add_argument("--duration", type=float, default=120.0, help="steady window, seconds (default 120)")
    p.add_argument("--warmup", type=float, help="seconds from deferral to window (default 30 + N/40)")
    p.add_argument("--end-spread", type=float, default=20.0)
    p.add_argument("--design", choices=("ours", "official", "both", "none"), default="both")
    p.add_argument("--official-cap", type=int, default=500, help="official design at min(N, cap) pods")
    p.add_argument("--logging-interval", type=int, default=10, help="official trigger's logging_interval")
    p.add_argument(
        "--database",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="metadata DB (default postgres, via tools/postgres.sh; SQLite locks under 1,000 triggers)",
    )
    p.add_argument(
        "--airflow-floor",
        action="store_true",
        help="also measure Airflow's own cost per deferred task (N DateTimeTriggers that only wait)",
    )
    p.add_argument("--json-out")
    p.add_argument("--keep-workdir", action="store_true")
    return p


async def _sim_stats(kubeconfig: str) -> dict[str, Any]:
    from kpo_async.testing.sim.control import SimControl

    async with SimControl(kubeconfig) as ctl:
        return await ctl.stats()


async def _pod_logs(client: Any, namespace: str, names: list[str]) -> dict[str, list[tuple[int, float]]]:
    """Each pod's printed lines: (line number, the API server's timestamp)."""
    from kubernetes_asyncio.client.exceptions import ApiException

    from kpo_async.logs import parse_timestamp

    semaphore = asyncio.Semaphore(20)
    out: dict[str, list[tuple[int, float]]] = {}

    async def one(name: str) -> None:
        async with semaphore:
            try:
                text = await client.core.read_namespaced_pod_log(
                    name, namespace, container="base", timestamps=True
                )
            except ApiException as exc:
                if exc.status == 404:  # deleted: the caller's pod count reports it
                    return
                raise
        lines = []
        for row in text.splitlines():
            stamp, _, rest = row.partition(" ")
            if rest.startswith("line "):
                utc = parse_timestamp(stamp)  # YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ
                lines.append((int(rest[5:]), datetime.fromisoformat(utc[:26] + "+00:00").timestamp()))
        out[name] = lines

    await asyncio.gather(*(one(n) for n in names))
    return out


async def run_design(design: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    from kpo_async.clients import create_client
    from kpo_async.connection import ClusterRef

    workdir = Path(tempfile.mkdtemp(prefix=f"kpo-bench-rt-{design}-{n}-"))
    sim = SimProcess(str(workdir))
    kubeconfig = await sim.start()
    airflow = BenchAirflow(
        workdir,
        counts={design: n},
        kubeconfig=kubeconfig,
        database=args.database,
        capacity=n + 10,
    )
    client = await create_client(ClusterRef(config_file=kubeconfig))
    run_id = f"rt-{design}-{n}-{int(time.time())}"
    observer = Observer(client, "default", run_selector(run_id))
    notes: list[str] = []
    try:
        await asyncio.to_thread(airflow.setup)
        await asyncio.to_thread(airflow.deferrals, "run", {"run_id": run_id})
        triggerer = airflow.start_triggerer()
        await asyncio.to_thread(
            airflow.deferrals,
            "defer",
            {"run_id": run_id, "defer": [[PROBE_TASK, -1]], "preload": [TRIGGER_MODULES[design]]},
        )
        await _wait(lambda: len(airflow.probe_samples(run_id)) >= 3, 180, "the lag probe's first reports")
        baseline_rss = triggerer.rss_by_pid()
        # Airflow's own cost: the triggerer with only the probe (heartbeats, trigger queries).
        cpu_before, idle_from = triggerer.cpu_by_pid(), time.time()
        await asyncio.sleep(BASELINE_SECONDS)
        baseline_cpu_pct = 100 * cpu_delta(cpu_before, triggerer.cpu_by_pid()) / (time.time() - idle_from)
        defer_pods = airflow.deferrals_later("defer")  # its imports now, not between pods and deferral
        observer.start()
        await asyncio.wait_for(observer.synced.wait(), 60)
        warmup = args.warmup if args.warmup is not None else 30 + n / 40
        t0 = time.time()
        defer_budget = 30 + n / 10  # a loaded machine defers ~10/s
        end_at = t0 + n / 150 + defer_budget + warmup + args.duration + 3
        pods = await create_pods(
            client,
            "default",
            run_id,
            n,
            end_at=end_at,
            end_spread=args.end_spread,
            log_rate=args.log_rate,
            xcom=False,
            kwok_pending=0.0,
        )
        pod_config = {
            "run_id": run_id,
            "namespace": "default",
            "kubeconfig": kubeconfig,
            "get_logs": True,
            "logging_interval": args.logging_interval,
            "pods": {design: [{"name": p.name} for p in pods]},
            "defer": [[design, i] for i in range(n)],
        }
        await asyncio.sleep(0)
        deferred = await asyncio.to_thread(defer_pods, pod_config)
        if deferred.get("deferred") != n:
            raise RuntimeError(f"deferred {deferred} of {n}")
        t_deferred = time.time()
        print(
            f"{time.strftime('%H:%M:%S')}   {n} pods created and deferred in {t_deferred - t0:.1f}s "
            f"(budget {end_at - 3 - args.duration - warmup - t0:.0f}s); window in "
            f"{end_at - 3 - args.duration - t_deferred:.0f}s",
            flush=True,
        )
        window_end = end_at - 3
        window_start = max(window_end - args.duration, t_deferred + 10)
        if window_end - window_start < args.duration - 1:
            notes.append(f"steady window shortened to {window_end - window_start:.0f}s")
        await asyncio.sleep(max(0.0, window_start - time.time()))
        if not triggerer.alive():
            raise RuntimeError(f"the triggerer exited; see {triggerer.log_path}")
        a = {"t": time.time(), "cpu": triggerer.cpu_by_pid(), "sim": await _sim_stats(kubeconfig)}
        await asyncio.sleep(max(0.0, window_end - time.time()))
        b = {
            "t": time.time(),
            "cpu": triggerer.cpu_by_pid(),
            "sim": await _sim_stats(kubeconfig),
            "rss": triggerer.rss_by_pid(),
            "load": loadavg(),
            "procs": len(triggerer.tree()),
            "roles": triggerer.roles(),
        }
        # Completion: every task instance leaves `deferred` (the triggerer recorded its event).
        deadline = end_at + args.end_spread + 240
        states: dict = {}

        def all_done() -> bool:
            nonlocal states
            if not triggerer.alive():
                raise RuntimeError(f"the triggerer exited; see {triggerer.log_path}")
            states = airflow.task_states(run_id)
            return all(s != "deferred" for (task, _), (s, _) in states.items() if task == design)

        try:
            await _wait(all_done, max(30.0, deadline - time.time()), "every event", poll=2.0)
        except RuntimeError as exc:  # report what there is: the figures say how far it got
            notes.append(str(exc))
        b["end"] = {"t": time.time(), "cpu": triggerer.cpu_by_pid()}
        await asyncio.sleep(3)  # the last lines and events reach the files
        b["baseline_cpu_pct"] = baseline_cpu_pct
        b["recorded"] = airflow.events_recorded_at(run_id)
        b["followed"] = set((await _sim_stats(kubeconfig)).get("followed_pods", []))
        printed = await _pod_logs(client, "default", [p.name for p in pods])
        logs = await asyncio.to_thread(airflow.trigger_logs, run_id, design)
        probe = airflow.probe_samples(run_id)
        return _analyze(design, n, pods, states, logs, printed, probe, observer, a, b, baseline_rss, notes)
    finally:
        await observer.stop()
        await client.close()
        await asyncio.to_thread(airflow.stop)
        await sim.stop()
        airflow.cleanup(args.keep_workdir)


async def run_floor(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Airflow's own cost per deferred task: the same triggerer with N of Airflow's DateTimeTriggers,
    which only wait (no pod, no log line), measured like a design's steady window."""
    workdir = Path(tempfile.mkdtemp(prefix=f"kpo-bench-rt-floor-{n}-"))
    airflow = BenchAirflow(
        workdir,
        counts={"ours": n},
        kubeconfig=str(workdir / "unused"),
        database=args.database,
        capacity=n + 10,
    )
    run_id = f"rt-floor-{n}-{int(time.time())}"
    try:
        await asyncio.to_thread(airflow.setup)
        await asyncio.to_thread(airflow.deferrals, "run", {"run_id": run_id})
        triggerer = airflow.start_triggerer()
        await asyncio.to_thread(airflow.deferrals, "defer", {"run_id": run_id, "defer": [[PROBE_TASK, -1]]})
        await _wait(lambda: len(airflow.probe_samples(run_id)) >= 3, 180, "the lag probe's first reports")
        baseline = triggerer.rss_by_pid()
        until = time.time() + 60 + n / 10 + args.duration + 60
        config = {"run_id": run_id, "floor_until": until, "defer": [["ours", i] for i in range(n)]}
        await asyncio.to_thread(airflow.deferrals, "defer", config)
        await asyncio.sleep(30 + n / 40)  # the triggerer picks them all up
        before, start = triggerer.cpu_by_pid(), time.time()
        await asyncio.sleep(args.duration)
        after, window = triggerer.cpu_by_pid(), time.time() - start
        rss, roles = triggerer.rss_by_pid(), triggerer.roles()
        running = airflow.query("SELECT count(*) FROM trigger WHERE triggerer_id IS NOT NULL")[0][0]
        return {
            "n": n,
            "running": running,
            "cpu_pct": 100 * cpu_delta(before, after) / window,
            "cpu_pct_by_process": _by_role(before, after, roles, 100 / window),
            "rss_kib_per_task": (sum(rss.values()) - sum(baseline.values())) / n,
            "rss_kib_per_task_by_process": _by_role(baseline, rss, roles, 1 / n),
        }
    finally:
        await asyncio.to_thread(airflow.stop)
        airflow.cleanup(args.keep_workdir)


def _by_role(before: dict[int, Any], after: dict[int, Any], roles: dict[int, str], scale: float) -> dict:
    """Per process role, the growth of a per-process figure (CPU seconds, RSS KiB) times `scale`:
    100 / window gives % of a core, 1 / N per deferred task."""
    out: dict[str, float] = {}
    for pid, value in after.items():
        role = roles.get(pid, "other")
        out[role] = out.get(role, 0.0) + (value - before.get(pid, 0)) * scale
    return {role: round(figure, 1) for role, figure in out.items()}


async def _wait(predicate: Any, timeout: float, what: str, poll: float = 1.0) -> None:
    deadline = time.time() + timeout
    while not await asyncio.to_thread(predicate):
        if time.time() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(poll)


def _analyze(
    design: str,
    n: int,
    pods: list[Any],
    states: dict,
    logs: dict,
    printed: dict,
    probe: list,
    observer: Observer,
    a: dict,
    b: dict,
    baseline_rss: dict[int, int],
    notes: list[str],
) -> dict[str, Any]:
    window = b["t"] - a["t"]
    pod_minutes = n * window / 60
    requests = counter_delta(b["sim"]["requests"], a["sim"]["requests"])
    for key, count in observer.own_requests_between(a["t"], b["t"]).items():
        requests[key] = requests.get(key, 0) - count
    requests = {k: v for k, v in requests.items() if v and not k.startswith("get /sim")}
    cpu = cpu_delta(a["cpu"], b["cpu"])
    lags = [s for at, samples in probe if a["t"] <= at <= b["t"] for s in samples]
    # While the pods end (the window's end until every event is recorded): events, last lines.
    end = b["end"]
    lags_end = [s for at, samples in probe if b["t"] < at <= end["t"] for s in samples]
    latencies = {"streamed": [], "polled": []}
    recorded_latencies: list[float] = []
    printed_total = delivered_total = missing_total = duplicate_total = records_total = 0
    line_delays: list[float] = []
    correct = 0
    missing_examples: list[dict[str, Any]] = []
    for pod in pods:
        state, event = states.get((design, pod.index), (None, None))
        if state == "scheduled" and isinstance(event, dict) and event.get("status") == "success":
            if event.get("pod_name", event.get("name")) == pod.name:
                correct += 1
        files = logs.get(pod.index, [])
        delivered: dict[int, float] = {}
        count = 0
        for log in files:
            records_total += log.records
            for number, at in log.lines:
                count += 1
                delivered.setdefault(number, at)
        lines = printed.get(pod.name, [])
        printed_numbers = {num for num, _ in lines}
        printed_total += len(printed_numbers)
        delivered_total += len(printed_numbers & set(delivered))
        missing = sorted(printed_numbers - set(delivered))
        missing_total += len(missing)
        if missing and len(missing_examples) < 10:
            missing_examples.append(
                {
                    "pod": pod.name,
                    "missing": missing[:5],
                    "printed": len(lines),
                    "delivered_last": max(delivered, default=None),
                }
            )
        duplicate_total += count - len(delivered)
        delays = [delivered[num] - at for num, at in lines if num in delivered]
        line_delays.extend(delays)
        # streamed: the simulator served this pod's log with follow=true (else it was polled)
        kind = "streamed" if pod.name in b.get("followed", ()) else "polled"
        fired = min((log.fired_at for log in files if log.fired_at), default=None)
        ended = observer.terminated_at.get(pod.name)
        if fired is not None and ended is not None:
            latencies[kind].append((fired - ended) * 1000)
        recorded = b["recorded"].get((design, pod.index))
        if recorded is not None and ended is not None:
            recorded_latencies.append((recorded - ended) * 1000)
    all_lat = latencies["streamed"] + latencies["polled"]
    return {
        "design": design,
        "n": n,
        "window_s": round(window, 1),
        "cpu_pct": 100 * cpu / window,
        "cpu_s_per_pod_min": cpu / pod_minutes,
        "cpu_baseline_pct": b["baseline_cpu_pct"],
        "cpu_pct_by_process": _by_role(a["cpu"], b["cpu"], b["roles"], 100 / window),
        "cpu_added_pct": 100 * cpu / window - b["baseline_cpu_pct"],
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": max(lags, default=float("nan")),
        "lag_samples": len(lags),
        "lag_end_p99_ms": percentile(lags_end, 99),
        "lag_end_max_ms": max(lags_end, default=float("nan")),
        "end_s": round(end["t"] - b["t"], 1),
        "cpu_pct_by_process_end": _by_role(b["cpu"], end["cpu"], b["roles"], 100 / (end["t"] - b["t"])),
        "rss_baseline_mb": sum(baseline_rss.values()) / 1024,
        "rss_steady_mb": sum(b["rss"].values()) / 1024,
        "rss_kib_per_pod": (sum(b["rss"].values()) - sum(baseline_rss.values())) / n,
        "rss_kib_per_pod_by_process": _by_role(baseline_rss, b["rss"], b["roles"], 1 / n),
        "requests": requests,
        "requests_per_pod_min": {k: v / pod_minutes for k, v in requests.items()},
        "requests_total_per_pod_min": sum(requests.values()) / pod_minutes,
        "lines_printed": printed_total,
        "lines_delivered": delivered_total,
        "lines_missing": missing_total,
        "lines_duplicated": duplicate_total,
        "log_records": records_total,
        "line_delay_p50_s": percentile(line_delays, 50),
        "line_delay_p99_s": percentile(line_delays, 99),
        "missing_examples": missing_examples,
        "streamed_pods": len(latencies["streamed"]),
        "polled_pods": len(latencies["polled"]),
        "t2e_streamed_p50_ms": percentile(latencies["streamed"], 50),
        "t2e_streamed_p99_ms": percentile(latencies["streamed"], 99),
        "t2e_polled_p50_ms": percentile(latencies["polled"], 50),
        "t2e_polled_p99_ms": percentile(latencies["polled"], 99),
        "t2e_p99_ms": percentile(all_lat, 99),
        "t2e_max_ms": max(all_lat, default=float("nan")),
        "t2db_pods": len(recorded_latencies),
        "t2db_p50_ms": percentile(recorded_latencies, 50),
        "t2db_p99_ms": percentile(recorded_latencies, 99),
        "events_correct": correct,
        "load_window_end": b["load"],
        "triggerer_processes": b["procs"],
        "notes": notes,
    }


ROWS = [
    ("triggerer CPU, % of one core (all processes)", "cpu_pct"),
    ("  of which Airflow's own (only the probe)", "cpu_baseline_pct"),
    ("  of which the N triggers", "cpu_added_pct"),
    ("CPU s / pod-minute", "cpu_s_per_pod_min"),
    ("event-loop lag p50 ms", "lag_p50_ms"),
    ("event-loop lag p99 ms", "lag_p99_ms"),
    ("event-loop lag max ms", "lag_max_ms"),
    ("RSS KiB / deferred pod", "rss_kib_per_pod"),
    ("API requests / pod-minute (all verbs)", "requests_total_per_pod_min"),
    ("log lines printed", "lines_printed"),
    ("log lines in the trigger logs", "lines_delivered"),
    ("log lines missing", "lines_missing"),
    ("log lines duplicated", "lines_duplicated"),
    ("log records carrying them", "log_records"),
    ("line printed -> in the log p50 / p99 s", None),
    ("pods streamed / polled", None),
    ("terminate->event streamed p50 / p99 ms", None),
    ("terminate->event polled p50 / p99 ms", None),
    ("terminate->event p99 ms (all)", "t2e_p99_ms"),
    ("terminate->event in the DB p50 / p99 ms", None),
    ("events correct", "events_correct"),
]
PER_POD = {"rss_kib_per_pod", "cpu_s_per_pod_min", "requests_total_per_pod_min", "lag_p99_ms", "t2e_p99_ms"}


def _cell(run: dict | None, label: str, key: str | None) -> str:
    if run is None:
        return "-"
    if key is not None:
        return fmt_num(run[key])
    if "in the DB" in label:
        return f"{fmt_num(run['t2db_p50_ms'])} / {fmt_num(run['t2db_p99_ms'])} ({run['t2db_pods']} pods)"
    if label.startswith("line printed"):
        return f"{fmt_num(run['line_delay_p50_s'])} / {fmt_num(run['line_delay_p99_s'])}"
    if label.startswith("pods"):
        return f"{run['streamed_pods']} / {run['polled_pods']}"
    kind = "streamed" if "streamed" in label else "polled"
    return f"{fmt_num(run[f't2e_{kind}_p50_ms'])} / {fmt_num(run[f't2e_{kind}_p99_ms'])}"


def print_report(runs: list[dict[str, Any]]) -> None:
    ours = next((r for r in runs if r["design"] == "ours"), None)
    official = next((r for r in runs if r["design"] == "official"), None)
    for run in runs:
        print(f"\n-- {run['design']}, N={run['n']}: requests in the window by verb: {run['requests']}")
        print(f"   per pod-minute: { {k: round(v, 3) for k, v in run['requests_per_pod_min'].items()} }")
        print(
            f"   RSS {run['rss_baseline_mb']:.0f} -> {run['rss_steady_mb']:.0f} MB; load at window end "
            f"{run['load_window_end']}; {run['triggerer_processes']} triggerer processes "
            f"(CPU % of a core: {run['cpu_pct_by_process']}; RSS KiB per pod: "
            f"{run['rss_kib_per_pod_by_process']}); notes {run['notes']}"
        )
        print(
            f"   while the pods ended ({run['end_s']} s after the window): CPU % of a core "
            f"{run['cpu_pct_by_process_end']}, event-loop lag p99 {fmt_num(run['lag_end_p99_ms'])} ms, "
            f"max {fmt_num(run['lag_end_max_ms'])} ms"
        )
        if run["missing_examples"]:
            print(f"   missing lines, examples: {run['missing_examples']}")
    head = f"ours N={ours['n']}" if ours else "ours"
    head2 = f"official N={official['n']}" if official else "official"
    print(f"\n== real airflow triggerer, logs on, {head} vs {head2}")
    print(f"   {'metric':44} {head:>18} {head2:>18} {'ours/official':>14}")
    for label, key in ROWS:
        ratio = "-"
        if ours and official and key in PER_POD and official[key] not in (0, None):
            ratio = f"{100 * ours[key] / official[key]:.3g}%"
        elif ours and official and key == "cpu_pct" and official[key]:
            per = (ours[key] / ours["n"]) / (official[key] / official["n"])
            ratio = f"{100 * per:.3g}% /pod"
        print(f"   {label:44} {_cell(ours, label, key):>18} {_cell(official, label, key):>18} {ratio:>14}")
    if ours:
        lines_ok = ours["lines_printed"] > 0 and ours["lines_delivered"] == ours["lines_printed"]
        checks = [
            ("triggerer CPU <= 10% of one core", ours["cpu_pct"] <= 10, f"{ours['cpu_pct']:.2f}%"),
            ("event-loop lag p99 < 100 ms", ours["lag_p99_ms"] < 100, f"{ours['lag_p99_ms']:.1f} ms"),
            (
                "<= 64 KiB RSS per deferred pod",
                ours["rss_kib_per_pod"] <= 64,
                f"{ours['rss_kib_per_pod']:.1f} KiB",
            ),
            (
                "100% of printed lines in the task logs",
                lines_ok,
                f"{ours['lines_delivered']}/{ours['lines_printed']}",
            ),
            (
                "terminate->event p99 < 2 s (streamed and polled)",
                ours["t2e_p99_ms"] < 2000,
                f"{ours['t2e_p99_ms']:.0f} ms",
            ),
            (
                "every event correct",
                ours["events_correct"] == ours["n"],
                f"{ours['events_correct']}/{ours['n']}",
            ),
        ]
        print(f"   issue #13 targets at N={ours['n']}:")
        for what, ok, value in checks:
            print(f"     [{'PASS' if ok else 'FAIL'}] {what}: {value}")


async def amain(args: argparse.Namespace) -> int:
    designs = {"both": ["ours", "official"], "none": []}.get(args.design, [args.design])
    runs = []
    for design in designs:
        n = args.pods if design == "ours" else min(args.pods, args.official_cap)
        print(f"{time.strftime('%H:%M:%S')} {design}: N={n}, load {loadavg()}", flush=True)
        runs.append(await run_design(design, n, args))
    if runs:
        print_report(runs)
    if args.airflow_floor:
        print(f"{time.strftime('%H:%M:%S')} Airflow's own: N={args.pods} DateTimeTriggers", flush=True)
        floor = await run_floor(args.pods, args)
        print(
            f"\n== Airflow's own cost of {floor['n']} deferred tasks whose triggers only wait "
            f"(DateTimeTrigger; {floor['running']} running): CPU {floor['cpu_pct']:.1f}% of a core "
            f"{floor['cpu_pct_by_process']}, RSS {floor['rss_kib_per_task']:.1f} KiB per task "
            f"{floor['rss_kib_per_task_by_process']}"
        )
        runs.append({"design": "airflow-floor", **floor})
    if args.json_out:
        with open(args.json_out, "w") as handle:  # noqa: ASYNC230 (the runs are over)
            json.dump(runs, handle, indent=1, default=str)
    ok = all(r["events_correct"] == r["n"] for r in runs if "events_correct" in r)
    return 0 if ok else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGTERM, _interrupt)  # clean up (triggerers, PostgreSQL, simulator) on SIGTERM
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
