#!/usr/bin/env python3
"""Client memory per TLS connection to the embedded cluster, with and without session tickets.

A child process serves TLS with the embedded cluster's serving context
(``kpo_async.testing.sim.tls.server_context``, session tickets on or off); a fresh client process
opens N aiohttp connections to it at once, keeps them open, and reports its resident memory
growth per connection, with asyncio's TLS read buffer capped as the triggerer's client caps it.
``--follow`` measures what the bench does: the whole embedded cluster serves N pods, each
followed over its own log stream. Each figure comes from its own process (memory an earlier run
freed would be reused; resident memory grows in steps, so a run can be one step off: read the
median). Usage: ``python tools/tls_connection_memory.py [--follow] [--connections N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import ssl
import statistics
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
from aiohttp import web

from kpo_async.clients import limit_tls_read_buffer
from kpo_async.settings import setting
from kpo_async.testing.harness import pod_body


def _serve(session_tickets: bool, follow: bool, ready: Connection) -> None:
    import kpo_async.testing.sim.server as server
    from kpo_async.testing.sim import SimCluster, SimConfig
    from kpo_async.testing.sim.tls import server_context

    server.server_context = functools.partial(server_context, session_tickets=session_tickets)

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"major": "1"})

    async def serve() -> None:
        async with SimCluster(SimConfig()) as sim:
            if follow:
                ready.send((sim.base_url, sim.token, sim.ca_path))
                await asyncio.Event().wait()
            assert sim._tls is not None
            app = web.Application()  # only /version, with the same TLS: nothing else allocates
            app.router.add_get("/version", version)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            context = server.server_context(sim._tls)
            await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context, backlog=4096).start()
            port = runner.addresses[0][1]
            ready.send((f"https://127.0.0.1:{port}", sim.token, sim.ca_path))
            await asyncio.Event().wait()

    asyncio.run(serve())


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def _per_connection_kib(url: str, token: str, ca_path: str, connections: int, follow: bool) -> float:
    limit_tls_read_buffer(setting("tls_read_buffer_kib"))  # as the triggerer's client does
    context = ssl.create_default_context(cafile=ca_path)
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=120)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        if follow:
            for index in range(connections + 1):
                body = pod_body(f"p{index}", duration_seconds=300, log_lines_per_second=1)
                async with session.post(f"{url}/api/v1/namespaces/default/pods", json=body, ssl=context) as r:
                    assert r.status == 201, await r.text()

        async def open_one(index: int) -> Any:
            if not follow:
                async with session.get(f"{url}/version", ssl=context) as response:
                    return await response.read()
            path = f"{url}/api/v1/namespaces/default/pods/p{index}/log?follow=true"
            for _ in range(100):  # until the container runs
                response = await session.get(path, ssl=context)
                if response.status == 200:
                    await response.content.readline()
                    return response
                response.release()
                await asyncio.sleep(0.1)
            raise AssertionError(f"pod p{index}'s log never opened")

        await open_one(connections)  # imports and first-use allocations out of the measurement
        before = _rss_kib()
        opened = await asyncio.gather(*(open_one(i) for i in range(connections)))  # each kept open
        await asyncio.sleep(2)  # TLS 1.3 tickets come after the handshake: let them be read
        growth = (_rss_kib() - before) / connections
        for response in opened if follow else []:
            response.close()
        return growth


def measure(session_tickets: bool, connections: int, follow: bool) -> float:
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(session_tickets, follow, theirs), daemon=True)
    server.start()
    try:
        url, token, ca_path = ours.recv()
        return asyncio.run(_per_connection_kib(url, token, ca_path, connections, follow))
    finally:
        server.terminate()
        server.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--follow", action="store_true", help="followed log streams of the embedded cluster")
    parser.add_argument("--one", choices=["tickets", "no-tickets"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(f"{measure(args.one == 'tickets', args.connections, args.follow):.1f}")
        return
    what = "followed log" if args.follow else "idle connection"
    for tickets in ("tickets", "no-tickets"):
        command = [sys.executable, __file__, "--one", tickets, "--connections", str(args.connections)]
        command += ["--follow"] if args.follow else []
        runs = [subprocess.run(command, check=True, capture_output=True, text=True) for _ in range(args.runs)]
        label = "with session tickets (Python's default)" if tickets == "tickets" else "without (the sim's)"
        figures = [float(run.stdout.strip()) for run in runs]
        listed = ", ".join(f"{kib:.1f}" for kib in figures)
        print(f"{label}: median {statistics.median(figures):.1f} ({listed}) KiB per {what}")


if __name__ == "__main__":
    main()
