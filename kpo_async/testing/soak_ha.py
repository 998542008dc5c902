"""``make soak-ha``: N deferred pods on two real ``airflow triggerer`` processes (HA) on PostgreSQL.

    python -m kpo_async.testing.soak_ha [--pods 500] [--kills 10] [--interval 20] [--seed 1]

A private PostgreSQL (tools/postgres.sh) holds the metadata DB; the embedded cluster runs the pods
(each prints one line per second and leaves an XCom value); N task instances are deferred with our
`PodTrigger` as a worker's deferral does it (`kpo_async.testing.bench.deferrals`: get_logs and
do_xcom_push on). Two triggerers share them. Every ``--interval`` seconds one triggerer, in turn,
is stopped: SIGKILL of its whole process group (``--kills`` times, alternating, so both are killed),
or, every third action, SIGTERM (a graceful stop); it is started again at once. The survivor (and
the restarted one) adopt the orphaned triggers once the dead one's heartbeat is older than
``triggerer_health_check_threshold`` (10 s here; ``job_heartbeat_sec`` 1 s).

Checked at the end, exit status 1 on any failure:
- every task instance left ``deferred`` exactly once with a ``success`` event naming its pod, its
  exit code 0 and its XCom value (`{"pod": i}`);
- every line each pod printed is in the task's trigger log files; a line appears twice only if a
  SIGKILLed triggerer had delivered it (repeats since the last checkpoint, docs/reliability.md);
- no pod was created or deleted by a trigger: exactly N pods, one per task, all Succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kpo_async.testing.bench.airflow_env import BenchAirflow, Triggerer
from kpo_async.testing.bench.cluster import Observer, SimProcess, create_pods, run_selector
from kpo_async.testing.bench.common import loadavg, percentile
from kpo_async.testing.bench.deferrals import PROBE_TASK
from kpo_async.testing.bench.real_triggerer import _pod_logs, _wait


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soak-ha", description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=500)
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs, alternating between the triggerers")
    p.add_argument("--interval", type=float, default=20.0, help="seconds between stop actions")
    p.add_argument("--log-rate", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep-workdir", action="store_true")
    return p


def _actions(kills: int) -> list[str]:
    """SIGKILL x kills, with a SIGTERM after every second kill (graceful stops of both, in turn)."""
    out: list[str] = []
    for i in range(kills):
        out.append("KILL")
        if i % 2 == 1:
            out.append("TERM")
    return out


async def soak(args: argparse.Namespace) -> int:
    from kpo_async.clients import create_client
    from kpo_async.connection import ClusterRef

    rng = random.Random(args.seed)
    n = args.pods
    workdir = Path(tempfile.mkdtemp(prefix=f"kpo-soak-ha-{n}-"))
    sim = SimProcess(str(workdir))
    kubeconfig = await sim.start()
    airflow = BenchAirflow(
        workdir, counts={"ours": n}, kubeconfig=kubeconfig, database="postgres", capacity=max(1000, n + 10)
    )
    client = await create_client(ClusterRef(config_file=kubeconfig))
    run_id = f"soak-ha-{n}-{int(time.time())}"
    observer = Observer(client, "default", run_selector(run_id))
    actions = _actions(args.kills)
    log: list[str] = []

    def say(text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        log.append(line)
        print(line, flush=True)

    try:
        await asyncio.to_thread(airflow.setup)
        await asyncio.to_thread(airflow.deferrals, "run", {"run_id": run_id})
        live: dict[str, Triggerer] = {}
        jobs: dict[str, int] = {}
        for name in ("A", "B"):
            live[name], jobs[name] = await _start(airflow, name)
        await asyncio.to_thread(airflow.deferrals, "defer", {"run_id": run_id, "defer": [[PROBE_TASK, -1]]})
        defer_pods = airflow.deferrals_later("defer")
        observer.start()
        await asyncio.wait_for(observer.synced.wait(), 60)
        t0 = time.time()
        stop_phase = 60 + len(actions) * args.interval
        end_at = t0 + 30 + n / 10 + stop_phase
        pods = await create_pods(
            client,
            "default",
            run_id,
            n,
            end_at=end_at,
            end_spread=30,
            log_rate=args.log_rate,
            xcom=True,
            kwok_pending=0.0,
        )
        config = {
            "run_id": run_id,
            "namespace": "default",
            "kubeconfig": kubeconfig,
            "get_logs": True,
            "xcom": True,
            "pods": {"ours": [{"name": p.name} for p in pods]},
            "defer": [["ours", i] for i in range(n)],
        }
        await asyncio.to_thread(defer_pods, config)
        say(
            f"{n} pods created and deferred in {time.time() - t0:.0f}s; "
            f"pods end in {end_at - time.time():.0f}s"
        )
        await asyncio.sleep(30)
        killed_jobs: set[str] = set()
        for i, action in enumerate(actions):
            name = ("A", "B")[i % 2] if action == "KILL" else ("A", "B")[(i // 3) % 2]
            victim = live[name]
            held = _held(airflow, run_id)
            job = jobs[name]
            sig = signal.SIGKILL if action == "KILL" else signal.SIGTERM
            took = await asyncio.to_thread(airflow.stop_triggerer, victim, sig)
            if action == "KILL":
                killed_jobs.add(str(job))
            live[name], jobs[name] = await _start(airflow, name)
            say(
                f"{action} {name} (job {job}, {held.get(job, 0)} triggers; spread {dict(held)}); "
                f"stopped in {took:.1f}s, restarted; load {loadavg()}"
            )
            await asyncio.sleep(args.interval * rng.uniform(0.7, 1.3))
        say(f"stop actions done; waiting for the pods to end (in {max(0, end_at - time.time()):.0f}s)")

        def done() -> bool:
            states = airflow.task_states(run_id)
            return all(s != "deferred" for (task, _), (s, _) in states.items() if task == "ours")

        # Restarts on a loaded machine can outlast the planned stop phase: wait from now as well.
        await _wait(done, max(300.0, end_at + 30 + 300 - time.time()), "every event", poll=3.0)
        await asyncio.sleep(3)
        states = airflow.task_states(run_id)
        printed = await _pod_logs(client, "default", [p.name for p in pods])
        files = await asyncio.to_thread(airflow.trigger_logs, run_id, "ours")
        listed = await client.core.list_namespaced_pod("default", label_selector=run_selector(run_id))
        return _report(n, pods, states, printed, files, listed.items, killed_jobs, observer, actions, say)
    finally:
        await observer.stop()
        await client.close()
        await asyncio.to_thread(airflow.stop)
        await sim.stop()
        airflow.cleanup(args.keep_workdir)
        if args.keep_workdir:
            print(f"kept {workdir}")


def _job_ids(airflow: BenchAirflow) -> list[int]:
    return [r[0] for r in airflow.query("SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id")]


async def _start(airflow: BenchAirflow, name: str) -> tuple[Triggerer, int]:
    """Start a triggerer and wait for its TriggererJob row (one per start; started one at a time)."""
    before = set(_job_ids(airflow))
    triggerer = airflow.start_triggerer(name)
    new: list[int] = []

    def registered() -> bool:
        new[:] = sorted(set(_job_ids(airflow)) - before)
        return bool(new)

    await _wait(registered, 180, f"triggerer {name}'s job row", poll=0.5)
    return triggerer, new[-1]


def _held(airflow: BenchAirflow, run_id: str) -> dict[int, int]:
    rows = airflow.query(
        "SELECT t.triggerer_id, count(*) FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
        "WHERE ti.run_id = ? AND ti.state = 'deferred' AND ti.task_id = 'ours' GROUP BY t.triggerer_id",
        (run_id,),
    )
    return dict(rows)


def _report(
    n: int,
    pods: list[Any],
    states: dict,
    printed: dict,
    files: dict,
    listed: list[Any],
    killed_jobs: set[str],
    observer: Observer,
    actions: list[str],
    say: Any,
) -> int:
    problems: list[str] = []
    lost = wrong = 0
    printed_total = delivered_total = repeats = unexplained_repeats = 0
    latencies = []
    for pod in pods:
        state, event = states.get(("ours", pod.index), (None, None))
        if state == "deferred" or event is None:
            lost += 1
            problems.append(f"{pod.name}: no event (state {state})")
            continue
        if not (
            state == "scheduled"
            and event.get("status") == "success"
            and event.get("pod_name") == pod.name
            and event.get("pod_uid") == pod.uid
            and event.get("exit_code") == 0
            and event.get("xcom") == {"pod": pod.index}
        ):
            wrong += 1
            problems.append(f"{pod.name}: wrong event {str(event)[:300]} (state {state})")
        counts: collections.Counter[int] = collections.Counter()
        from_killed: set[int] = set()
        fired = []
        for trigger_log in files.get(pod.index, []):
            numbers = [num for num, _ in trigger_log.lines]
            counts.update(numbers)
            if trigger_log.triggerer_id in killed_jobs:
                from_killed.update(numbers)
            if trigger_log.fired_at:
                fired.append(trigger_log.fired_at)
        lines = {num for num, _ in printed.get(pod.name, [])}
        printed_total += len(lines)
        delivered_total += len(lines & set(counts))
        missing = sorted(lines - set(counts))
        if missing:
            problems.append(f"{pod.name}: {len(missing)} lines missing, e.g. {missing[:5]}")
        for number, count in counts.items():
            if count > 1:
                repeats += count - 1
                if number not in from_killed:
                    unexplained_repeats += count - 1
        ended = observer.terminated_at.get(pod.name)
        if ended and fired:
            latencies.append((min(fired) - ended) * 1000)
    if unexplained_repeats:
        problems.append(f"{unexplained_repeats} repeated lines that no SIGKILLed triggerer had delivered")
    names = collections.Counter(p.metadata.name for p in listed)
    expected = {p.name for p in pods}
    orphans_or_dups = set(names) ^ expected
    if orphans_or_dups or any(c > 1 for c in names.values()):
        problems.append(f"pods differ from the N created: {sorted(orphans_or_dups)[:5]}")
    not_succeeded = [p.metadata.name for p in listed if (p.status.phase or "") != "Succeeded"]
    if not_succeeded:
        problems.append(f"{len(not_succeeded)} pods not Succeeded, e.g. {not_succeeded[:3]}")
    say(
        f"RESULT pods {n}, SIGKILLs {actions.count('KILL')}, SIGTERMs {actions.count('TERM')}: "
        f"events ok {n - lost - wrong}/{n}, lost {lost}, wrong {wrong}; "
        f"lines {delivered_total}/{printed_total} delivered, {repeats} repeats "
        f"(all by SIGKILLed triggerers: {unexplained_repeats == 0}); "
        f"pods {len(listed)} (extra/missing {len(orphans_or_dups)}); terminate->event p50/p99/max "
        f"{percentile(latencies, 50):.0f}/{percentile(latencies, 99):.0f}/{max(latencies, default=0):.0f} ms"
    )
    for problem in problems[:30]:
        print(f"  PROBLEM {problem}")
    return 1 if problems else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # clean up (triggerers, PostgreSQL, simulator) on SIGTERM
    return asyncio.run(soak(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
