#!/usr/bin/env python3
"""Client memory per TLS connection to the embedded cluster, with and without session tickets.

A child process serves ``/version`` over TLS with the embedded cluster's serving context
(``kpo_async.testing.sim.tls.server_context``); a fresh client process opens N aiohttp
connections to it at once, keeps them open, and reports its resident memory growth per
connection. Each figure comes from its own process (memory an earlier run freed would be reused).
Usage: ``python tools/tls_connection_memory.py [--connections 400] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import ssl
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection

import aiohttp
from aiohttp import web

from kpo_async.clients import TLS_READ_BUFFER_KIB, limit_tls_read_buffer
from kpo_async.testing.sim.tls import TlsFiles, generate, server_context


def _serve(files: TlsFiles, session_tickets: bool, port: int, ready: Connection) -> None:
    async def version(_: web.Request) -> web.Response:
        return web.json_response({"major": "1"})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/version", version)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        context = server_context(files, session_tickets=session_tickets)
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context, backlog=4096).start()
        ready.send(True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def _per_connection_kib(port: int, ca_path: str, connections: int) -> float:
    limit_tls_read_buffer(TLS_READ_BUFFER_KIB)  # as the triggerer's client does
    url = f"https://127.0.0.1:{port}/version"
    context = ssl.create_default_context(cafile=ca_path)
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=120)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get() -> None:
            async with session.get(url, ssl=context) as response:
                await response.read()

        await get()  # imports and first-use allocations out of the measurement
        before = _rss_kib()
        await asyncio.gather(*(get() for _ in range(connections)))  # one connection each, kept open
        await asyncio.sleep(0.5)  # TLS 1.3 tickets come after the handshake: let them be read
        return (_rss_kib() - before) / connections


def measure(session_tickets: bool, connections: int) -> float:
    with tempfile.TemporaryDirectory() as directory, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        files = generate(directory)
        ours, theirs = multiprocessing.Pipe()
        server = multiprocessing.Process(
            target=_serve, args=(files, session_tickets, port, theirs), daemon=True
        )
        server.start()
        try:
            ours.recv()
            return asyncio.run(_per_connection_kib(port, files.ca_path, connections))
        finally:
            server.terminate()
            server.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one", choices=["tickets", "no-tickets"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(f"{measure(args.one == 'tickets', args.connections):.1f}")
        return
    for tickets in ("tickets", "no-tickets"):
        command = [sys.executable, __file__, "--one", tickets, "--connections", str(args.connections)]
        runs = [subprocess.run(command, check=True, capture_output=True, text=True) for _ in range(args.runs)]
        label = "with session tickets (Python's default)" if tickets == "tickets" else "without (the sim's)"
        figures = ", ".join(run.stdout.strip() for run in runs)
        print(f"{label}: {figures} KiB per client connection ({args.connections} connections)")


if __name__ == "__main__":
    main()
