"""A small `sh` interpreter: what simulated containers and exec sessions run (no real process).

The supported subset is documented in docs/embedded-cluster.md.
"""

from __future__ import annotations

import posixpath

from kpo_async.testing.sim.shell import procs as _procs  # noqa: F401 - registers pgrep, id
from kpo_async.testing.sim.shell import python as _python  # noqa: F401 - registers python, python3
from kpo_async.testing.sim.shell.builtins import lookup, parse_sh_argv, run_argv
from kpo_async.testing.sim.shell.interp import Shell, ShellExit, ShellHost
from kpo_async.testing.sim.shell.io import (
    IO,
    BufferSink,
    BytesSource,
    CallbackSink,
    NullSink,
    QueueSource,
    SignalBox,
    Sink,
)

SHELLS = {"sh", "bash", "ash", "dash"}


def is_shell(argv0: str) -> bool:
    return posixpath.basename(argv0) in SHELLS


def is_runnable(argv: list[str]) -> bool:
    """True if the simulator can run this argv (a shell invocation or a known builtin)."""
    return bool(argv) and (is_shell(argv[0]) or lookup(argv[0]) is not None)


async def run_process(host: ShellHost, env: dict[str, str], argv: list[str], io: IO) -> int:
    """Run argv as the process of a container or an exec session; returns its exit status."""
    if not argv:
        return 0
    if is_shell(argv[0]):
        flags, script, rest = parse_sh_argv(argv)
        if script is None:
            if rest:
                try:
                    script = host.fs.read(posixpath.normpath("/" + rest[0])).decode(errors="replace")
                except Exception:
                    io.stderr.write(
                        f"{argv[0]}: can't open '{rest[0]}': No such file or directory\n".encode()
                    )
                    return 2
                rest = rest[1:]
        sh = Shell(host, env, rest[0] if rest else argv[0], rest[1:], "x" in flags, "e" in flags)
        if script is None:  # the script comes on stdin, command by command
            return await sh.run_stream(io)
        return await sh.run_script(script, io)
    if lookup(argv[0]) is None:
        io.stderr.write(
            f"exec: {argv[0]!r}: executable file not found in $PATH "
            "(the kpo-async simulator runs only its shell subset; see docs/embedded-cluster.md)\n".encode()
        )
        return 127
    sh = Shell(host, env, argv[0], argv[1:])
    return await run_argv(sh, argv, io)


__all__ = [
    "IO",
    "BufferSink",
    "BytesSource",
    "CallbackSink",
    "NullSink",
    "QueueSource",
    "Shell",
    "ShellExit",
    "ShellHost",
    "SignalBox",
    "Sink",
    "is_runnable",
    "is_shell",
    "run_process",
]
