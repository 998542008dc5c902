"""Scale benchmark of the simulator: N concurrent pods + W watches in one namespace.

    python -m kpo_async.testing.sim.bench_scale --pods 5000 [--watches 50] [--sidecar] [--json]

Starts `python -m kpo_async.testing.sim` as its own process (TLS + token, as by default), creates N pods
whose first container is described by the behaviour annotation (runs for minutes, logs slowly),
keeps W watches open on the namespace, then measures the simulator process's RSS and CPU and the
latency of get / list / create requests and of watch event delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import ssl
import statistics
import sys
import tempfile
import time
from typing import Any

import aiohttp
import psutil
import yaml

from kpo_async.identity import XCOM_SIDECAR_NAME, XCOM_SIDECAR_SCRIPT
from kpo_async.testing.harness import SimProcess


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(_pct(values, 50) * 1000, 2),
        "p99_ms": round(_pct(values, 99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2) if values else float("nan"),
        "mean_ms": round(statistics.fmean(values) * 1000, 2) if values else float("nan"),
    }


def pod_body(name: str, duration: float, sidecar: bool) -> dict[str, Any]:
    behaviour = {"duration_seconds": duration, "log_lines_per_second": 1, "xcom": {"pod": name}}
    mounts = [{"name": "xcom", "mountPath": "/airflow/xcom"}]
    containers: list[dict[str, Any]] = [{"name": "base", "image": "alpine:3.20", "volumeMounts": mounts}]
    if sidecar:
        containers.append(
            {
                "name": XCOM_SIDECAR_NAME,
                "image": "alpine:3.20",
                "command": ["sh", "-c", XCOM_SIDECAR_SCRIPT],
                "volumeMounts": [dict(m) for m in mounts],
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "bench", "shard": str(hash(name) % 50)},
            "annotations": {"sim.kpo-async.io/behavior": json.dumps(behaviour)},
        },
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "xcom", "emptyDir": {}}],
            "containers": containers,
        },
    }


class Bench:
    def __init__(self, kubeconfig: str, ns: str) -> None:
        with open(kubeconfig) as f:
            kc = yaml.safe_load(f)
        cluster = kc["clusters"][0]["cluster"]
        self.server = cluster["server"]
        token = kc["users"][0]["user"].get("token")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.ssl: ssl.SSLContext | bool = False
        if cluster.get("certificate-authority-data"):
            ctx = ssl.create_default_context()
            ctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
            self.ssl = ctx
        self.ns = ns
        self.session = aiohttp.ClientSession(
            headers=self.headers, connector=aiohttp.TCPConnector(limit=200, ssl=self.ssl)
        )
        self.created_at: dict[str, float] = {}
        self.watch_lag: list[float] = []
        self.watch_events = 0
        self.watch_bytes = 0

    async def close(self) -> None:
        await self.session.close()

    async def timed(self, method: str, path: str, **kw: Any) -> tuple[float, int, bytes]:
        t0 = time.perf_counter()
        async with self.session.request(method, self.server + path, **kw) as r:
            body = await r.read()
        return time.perf_counter() - t0, r.status, body

    async def create(self, name: str, duration: float, sidecar: bool) -> float:
        self.created_at[name] = time.perf_counter()
        dt, status, body = await self.timed(
            "POST", f"/api/v1/namespaces/{self.ns}/pods", json=pod_body(name, duration, sidecar)
        )
        if status != 201:
            raise RuntimeError(f"create {name}: {status} {body[:200]!r}")
        return dt

    async def watch(self, stop: asyncio.Event, first: bool) -> None:
        query = "watch=true&allowWatchBookmarks=true&timeoutSeconds=3600"
        url = f"{self.server}/api/v1/namespaces/{self.ns}/pods?{query}"
        async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as r:
            while not stop.is_set():
                line = await r.content.readline()
                if not line:
                    return
                self.watch_events += 1
                self.watch_bytes += len(line)
                if first and line.startswith(b'{"type":"ADDED"'):
                    name = json.loads(line)["object"]["metadata"]["name"]
                    t = self.created_at.get(name)
                    if t is not None:
                        self.watch_lag.append(time.perf_counter() - t)

    async def count_phase(self, phase: str) -> int:
        _, _, body = await self.timed(
            "GET", f"/api/v1/namespaces/{self.ns}/pods", params={"fieldSelector": f"status.phase={phase}"}
        )
        return len(json.loads(body)["items"])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix="kpo-async-bench-")
    # Started before any event loop work; it blocks only until the cluster serves.
    sim = SimProcess(workdir, "--watch-history", str(args.history))
    kubeconfig = sim.kubeconfig_path
    proc = psutil.Process(sim.pid)
    rss_idle = proc.memory_info().rss
    bench = Bench(kubeconfig, args.namespace)
    stop = asyncio.Event()
    results: dict[str, Any] = {"pods": args.pods, "watches": args.watches, "sidecar": args.sidecar}
    try:
        watchers = [asyncio.ensure_future(bench.watch(stop, i == 0)) for i in range(args.watches)]
        await asyncio.sleep(0.5)
        sem = asyncio.Semaphore(args.concurrency)
        create_lat: list[float] = []

        async def one(i: int) -> None:
            async with sem:
                create_lat.append(await bench.create(f"bench-{i:05d}", args.duration, args.sidecar))

        proc.cpu_percent(None)
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.pods)))
        create_wall = time.perf_counter() - t0
        results["create_all_seconds"] = round(create_wall, 2)
        results["create_during_fill"] = _summary(create_lat)

        t_run = time.perf_counter()
        while True:
            running = await bench.count_phase("Running")
            if running >= args.pods or time.perf_counter() - t_run > 300:
                break
            await asyncio.sleep(1)
        results["running"] = running
        results["all_running_after_seconds"] = round(time.perf_counter() - t0, 2)
        results["cpu_percent_during_fill"] = round(proc.cpu_percent(None), 1)
        await asyncio.sleep(args.settle)

        # steady state: pods running, watches open
        proc.cpu_percent(None)
        await asyncio.sleep(5)
        results["cpu_percent_idle_steady"] = round(proc.cpu_percent(None), 1)
        results["rss_mb_idle_before_pods"] = round(rss_idle / 2**20, 1)
        results["rss_mb_steady"] = round(proc.memory_info().rss / 2**20, 1)

        names = list(bench.created_at)
        get_lat = []
        for _ in range(args.gets):
            dt, status, _ = await bench.timed(
                "GET", f"/api/v1/namespaces/{args.namespace}/pods/{random.choice(names)}"
            )
            assert status == 200
            get_lat.append(dt)
        results["get_pod"] = _summary(get_lat)

        sel_lat = []
        for _ in range(args.gets // 5):
            dt, status, _ = await bench.timed(
                "GET", f"/api/v1/namespaces/{args.namespace}/pods", params={"labelSelector": "shard=7"}
            )
            sel_lat.append(dt)
        results["list_label_selector"] = _summary(sel_lat)

        list_lat = []
        list_size = 0
        for _ in range(args.lists):
            dt, status, body = await bench.timed("GET", f"/api/v1/namespaces/{args.namespace}/pods")
            list_lat.append(dt)
            list_size = len(body)
        results["list_all_pods"] = _summary(list_lat) | {"response_mb": round(list_size / 2**20, 1)}

        extra_create = []
        for i in range(args.creates):
            extra_create.append(await bench.create(f"extra-{i:04d}", args.duration, args.sidecar))
        results["create_pod_at_size"] = _summary(extra_create)

        log_lat = []
        for _ in range(args.gets // 5):
            dt, status, _ = await bench.timed(
                "GET",
                f"/api/v1/namespaces/{args.namespace}/pods/{random.choice(names)}/log",
                params={"container": "base"},
            )
            log_lat.append(dt)
        results["get_pod_log"] = _summary(log_lat)
        results["watch_delivery_lag"] = _summary(bench.watch_lag)
        results["watch_events_received_total"] = bench.watch_events
        results["watch_mb_received_total"] = round(bench.watch_bytes / 2**20, 1)
        results["rss_mb_end"] = round(proc.memory_info().rss / 2**20, 1)
        results["open_watches_server"] = await _open_watches(bench)
        stop.set()
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    finally:
        await bench.close()
        sim.stop()
    return results


async def _open_watches(bench: Bench) -> int:
    _, _, body = await bench.timed("GET", "/sim/v1/stats")
    return int(json.loads(body)["open_watches"])


def _print(results: dict[str, Any]) -> None:
    print(
        f"kpo-async sim scale benchmark: {results['pods']} pods, {results['watches']} watches, "
        f"sidecar={results['sidecar']}, {os.cpu_count()} CPUs"
    )
    for key, value in results.items():
        if isinstance(value, dict):
            print(
                f"  {key:<28} p50 {value['p50_ms']:>9.2f} ms   p99 {value['p99_ms']:>9.2f} ms   "
                f"max {value['max_ms']:>9.2f} ms   n={value['n']}"
                + (f"   body {value['response_mb']} MB" if "response_mb" in value else "")
            )
        elif key not in ("pods", "watches", "sidecar"):
            print(f"  {key:<28} {value}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kpo_async.testing.sim.bench_scale", description=__doc__)
    p.add_argument("--pods", type=int, default=5000)
    p.add_argument("--watches", type=int, default=50)
    p.add_argument(
        "--sidecar", action="store_true", help="add the XCom sidecar (a shell idle loop) to every pod"
    )
    p.add_argument("--duration", type=float, default=600.0, help="behaviour duration of each pod (seconds)")
    p.add_argument("--concurrency", type=int, default=50, help="concurrent creates while filling")
    p.add_argument("--gets", type=int, default=500)
    p.add_argument("--lists", type=int, default=10)
    p.add_argument("--creates", type=int, default=200)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--history", type=int, default=10000)
    p.add_argument("--namespace", default="default")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    results = asyncio.run(run(args))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
