"""`kpo-async sim` (or `python -m kpo_async.testing.sim`): the embedded cluster as a process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from kpo_async.testing.sim.config import SimConfig
from kpo_async.testing.sim.errors import ApiError
from kpo_async.testing.sim.server import SimCluster
from kpo_async.testing.sim.validation import validate_namespace


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kpo-async sim",
        description=(
            "Start the embedded Kubernetes cluster: an API server on 127.0.0.1 with a simulated "
            "scheduler and kubelet (no container runs: a small shell interpreter plays each "
            "container's command), for "
            "trying DAGs and running tests without a cluster. It writes a kubeconfig for kubectl, "
            "Airflow connections and `kpo-async doctor`, prints where it is, and runs until Ctrl-C."
        ),
        epilog=(
            "example: kpo-async sim --kubeconfig ./sim.kubeconfig --namespace airflow-jobs  "
            "(then, in another shell: kubectl --kubeconfig ./sim.kubeconfig get namespaces)"
        ),
    )
    p.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="where to write the kubeconfig (default: a file in a new temporary directory)",
    )
    p.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NAME",
        help="also create this namespace at start (repeatable); 'default' and 'airflow' always exist",
    )
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--no-tls", action="store_true", help="serve plain HTTP instead of HTTPS")
    p.add_argument("--no-auth", action="store_true", help="accept requests without a bearer token")
    p.add_argument("--token", help="the bearer token the kubeconfig carries (default: a random one)")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="how fast the simulated kubelet schedules and starts pods (2 = twice as fast; default 1)",
    )
    p.add_argument(
        "--watch-history",
        type=int,
        default=10000,
        metavar="N",
        help="watch events kept for clients resuming a watch (default 10000)",
    )
    p.add_argument(
        "--allocatable",
        action="append",
        default=[],
        metavar="RESOURCE=QUANTITY",
        help="override the node's allocatable resources, e.g. --allocatable memory=1Ti (repeatable)",
    )
    p.add_argument(
        "--log-level",
        default="WARNING",
        metavar="LEVEL",
        help="the simulator's own log level: DEBUG, INFO, WARNING (default) or ERROR",
    )
    return p


async def _serve(config: SimConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with SimCluster(config) as cluster:
        print(f"kubeconfig: {cluster.kubeconfig_path}", flush=True)
        print(f"server: {cluster.base_url}", flush=True)
        print(f"namespaces: {', '.join(config.namespaces)}", flush=True)
        print("Running until Ctrl-C.", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    allocatable = dict(SimConfig().node_allocatable)
    for item in args.allocatable:
        key, sep, value = item.partition("=")
        if not sep:
            _parser().error(f"--allocatable wants RESOURCE=QUANTITY, got {item!r}")
        allocatable[key] = value
    for name in args.namespace:
        try:
            validate_namespace({"metadata": {"name": name}})
        except ApiError as exc:
            _parser().error(f"--namespace {name!r}: {exc.message}")
    config = SimConfig(
        port=args.port,
        tls=not args.no_tls,
        auth=not args.no_auth,
        token=args.token,
        kubeconfig_path=os.path.abspath(args.kubeconfig) if args.kubeconfig else None,
        speed=args.speed,
        watch_history=args.watch_history,
        node_allocatable=allocatable,
        namespaces=tuple(dict.fromkeys([*SimConfig().namespaces, *args.namespace])),
    )
    try:
        asyncio.run(_serve(config))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
