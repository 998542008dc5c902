"""Process tools over the simulated container's process table: `pgrep` and `id`.

The table is pid 1 (the container's command) plus every process started with exec; all run as
the container's user (`runAsUser`, root by default).
"""

from __future__ import annotations

import posixpath
import re

from kpo_async.testing.sim.shell.builtins import builtin
from kpo_async.testing.sim.shell.interp import Shell
from kpo_async.testing.sim.shell.io import IO


def _processes(sh: Shell) -> list[tuple[int, list[str]]]:
    table = getattr(sh.host, "processes", None)
    return table() if table is not None else [(sh.host.pid, [sh.argv0])]


def _uid(sh: Shell) -> int:
    return int(getattr(sh.host, "uid", 0))


def _user_matches(spec: str, uid: int) -> bool:
    for user in spec.split(","):
        if user == str(uid) or (user == "root" and uid == 0):
            return True
    return False


@builtin("pgrep")
async def b_pgrep(sh: Shell, argv: list[str], io: IO) -> int:
    full = exact = list_names = False
    users: str | None = None
    pattern: str | None = None
    args = argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-u" and i + 1 < len(args):
            users = args[i + 1]
            i += 2
            continue
        if a.startswith("-") and len(a) > 1 and pattern is None:
            for flag in a[1:]:
                if flag == "f":
                    full = True
                elif flag == "x":
                    exact = True
                elif flag == "l":
                    list_names = True
                else:
                    io.stderr.write(f"pgrep: invalid option -- '{flag}'\n".encode())
                    return 2
        elif pattern is None:
            pattern = a
        i += 1
    if pattern is None and users is None:
        io.stderr.write(b"pgrep: no matching criteria specified\n")
        return 2
    try:
        rx = re.compile(pattern or "")
    except re.error as e:
        io.stderr.write(f"pgrep: {e}\n".encode())
        return 2
    uid = _uid(sh)
    found = 0
    for pid, cmd in sorted(_processes(sh)):
        if users is not None and not _user_matches(users, uid):
            continue
        name = posixpath.basename(cmd[0])[:15] if cmd else ""
        subject = " ".join(cmd) if full else name
        hit = rx.fullmatch(subject) if exact else rx.search(subject)
        if pattern is not None and hit is None:
            continue
        found += 1
        io.stdout.write(f"{pid} {name}\n".encode() if list_names else f"{pid}\n".encode())
    return 0 if found else 1


@builtin("id")
async def b_id(sh: Shell, argv: list[str], io: IO) -> int:
    uid = _uid(sh)
    name = "root" if uid == 0 else str(uid)
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-"))
    if "u" in flags or "g" in flags:
        io.stdout.write(f"{name if 'n' in flags else uid}\n".encode())
        return 0
    io.stdout.write(f"uid={uid}({name}) gid={uid}({name}) groups={uid}({name})\n".encode())
    return 0
