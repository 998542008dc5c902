"""`python -m kpo_async.testing.sim --kubeconfig PATH [--port N] [--no-tls] [--no-auth]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from kpo_async.testing.sim.config import SimConfig
from kpo_async.testing.sim.server import SimCluster


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kpo_async.testing.sim", description="Run the kpo-async embedded cluster."
    )
    p.add_argument("--kubeconfig", help="where to write the kubeconfig (default: a temp dir)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--no-tls", action="store_true", help="serve plain HTTP")
    p.add_argument("--no-auth", action="store_true", help="accept requests without a bearer token")
    p.add_argument("--token", help="bearer token (default: random)")
    p.add_argument("--speed", type=float, default=1.0, help="kubelet speed factor (2 = twice as fast)")
    p.add_argument("--watch-history", type=int, default=10000, help="watch events kept for resuming")
    p.add_argument(
        "--allocatable",
        action="append",
        default=[],
        metavar="RESOURCE=QUANTITY",
        help="override the node's allocatable resources, e.g. --allocatable memory=1Ti (repeatable)",
    )
    p.add_argument("--log-level", default="WARNING")
    return p


async def _serve(config: SimConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with SimCluster(config) as cluster:
        print(f"kubeconfig: {cluster.kubeconfig_path}", flush=True)
        print(f"server: {cluster.base_url}", flush=True)
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
    config = SimConfig(
        port=args.port,
        tls=not args.no_tls,
        auth=not args.no_auth,
        token=args.token,
        kubeconfig_path=args.kubeconfig,
        speed=args.speed,
        watch_history=args.watch_history,
        node_allocatable=allocatable,
    )
    try:
        asyncio.run(_serve(config))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
