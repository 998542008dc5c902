"""`python` / `python3` in a simulated container: the host's interpreter, on a copy of the container's files.

What `@task.kubernetes`-style pods run (`python -c CODE`, `python SCRIPT ARGS`). The simulator's
filesystems live in memory, so the program runs in a child process of the simulator's own
interpreter (base install, no site-packages: `-I -S`, like a slim python image) inside a temporary
directory holding a copy of the container's files; its absolute paths are mapped into that directory
(`open`, `os.makedirs`, `os.path.exists`, ...), and what it created or changed is copied back into
the container when it exits. Its environment is the shell's exported variables. Stdout and stderr
stream into the container's log as they are written. docs/embedded-cluster.md lists the limits.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shutil
import sys
import tempfile

from kpo_async.testing.sim.fs import ContainerFS, FsError
from kpo_async.testing.sim.shell.builtins import builtin
from kpo_async.testing.sim.shell.interp import Shell
from kpo_async.testing.sim.shell.io import IO

#: Not copied: the kernel's and the runtime's trees.
_SKIP = {"/proc", "/sys", "/dev"}

#: Runs first in the child: maps absolute paths into the copy (argv[1]), then runs the program.
_BOOTSTRAP = r"""
import builtins, io, os, os.path, sys
root = sys.argv[1]
def where(p):
    if isinstance(p, (str, bytes, os.PathLike)) and not isinstance(p, int):
        s = os.fsdecode(p)
        if s.startswith("/") and not s.startswith(("/dev/", root + "/")) and s != root:
            return root + s
    return p
def mapped(fn):
    def call(p, *a, **k):
        return fn(where(p), *a, **k)
    return call
builtins.open = io.open = mapped(io.open)
for mod, names in ((os, ("makedirs", "mkdir", "listdir", "remove", "unlink", "rmdir", "stat", "scandir")),
                   (os.path, ("exists", "isdir", "isfile", "getsize"))):
    for n in names:
        setattr(mod, n, mapped(getattr(mod, n)))
mode, program = sys.argv[2], sys.argv[3]
sys.argv = [program if mode != "-c" else "-c", *sys.argv[4:]]
if mode == "-c":
    code, name = program, "<string>"
else:
    with open(program, "rb") as f:
        code, name = f.read(), program
os.chdir(root + os.environ.pop("__SIM_CWD", "/"))
scope = {"__name__": "__main__", "__builtins__": builtins}
if mode != "-c":
    scope["__file__"] = program
try:
    exec(compile(code, name, "exec"), scope)
except SystemExit:
    raise
except BaseException as exc:  # the traceback python itself would print: without this file's frame
    import traceback
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
    sys.exit(1)
"""


def _copy_out(fs: ContainerFS, path: str, root: str, seen: dict[str, bytes]) -> None:
    """The container's tree under `path` into `root`; `seen` gets every file's content."""
    for name in fs.listdir(path):
        child = posixpath.join(path, name)
        if child in _SKIP:
            continue
        target = root + child
        if fs.is_dir(child):
            os.makedirs(target, exist_ok=True)
            _copy_out(fs, child, root, seen)
        elif fs.is_file(child):
            data = fs.read(child)
            with open(target, "wb") as f:
                f.write(data)
            seen[child] = data


def _copy_back(fs: ContainerFS, root: str, seen: dict[str, bytes], io: IO) -> None:
    """What the program created, changed or removed, back into the container."""
    present: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = "/" + os.path.relpath(dirpath, root).lstrip(".")
        rel = posixpath.normpath(rel)
        try:
            for d in dirnames:
                child = posixpath.join(rel, d)
                if not fs.is_dir(child):
                    fs.mkdir(child, parents=True)
            for name in filenames:
                child = posixpath.join(rel, name)
                present.add(child)
                with open(os.path.join(dirpath, name), "rb") as f:
                    data = f.read()
                if seen.get(child) != data:
                    fs.write(child, data)
        except FsError as e:
            io.stderr.write(f"python: {rel}: {e}\n".encode())
    for gone in set(seen) - present:
        try:
            fs.remove(gone)
        except FsError:
            pass


async def _pump(stream: asyncio.StreamReader, sink: object) -> None:
    while chunk := await stream.read(65536):
        sink.write(chunk)  # type: ignore[attr-defined]


@builtin("python", "python3")
async def b_python(sh: Shell, argv: list[str], io: IO) -> int:
    args = argv[1:]
    while args and args[0] in ("-u", "-B", "-E", "-s", "-I"):
        args = args[1:]
    if not args:
        io.stderr.write(b"python: the simulator runs python -c CODE or python SCRIPT, not a REPL\n")
        return 2
    mode, program, rest = (
        ("-c", args[1], args[2:]) if args[0] == "-c" and len(args) > 1 else ("", args[0], args[1:])
    )
    if mode != "-c":
        program = sh.resolve(program)
        if not sh.host.fs.is_file(program):
            io.stderr.write(
                f"python: can't open file '{args[0]}': [Errno 2] No such file or directory\n".encode()
            )
            return 2
    env = {name: sh.vars[name] for name in sh.exported if name in sh.vars}
    env["__SIM_CWD"] = sh.cwd
    root = tempfile.mkdtemp(prefix="kpo-sim-python-")
    seen: dict[str, bytes] = {}
    proc = None
    try:
        _copy_out(sh.host.fs, "/", root, seen)
        interpreter = getattr(sys, "_base_executable", None) or sys.executable
        proc = await asyncio.create_subprocess_exec(
            interpreter,
            "-I",
            "-S",
            "-c",
            _BOOTSTRAP,
            root,
            mode or "-f",
            program,
            *rest,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=root,
        )
        assert proc.stdout is not None and proc.stderr is not None
        await asyncio.gather(_pump(proc.stdout, io.stdout), _pump(proc.stderr, io.stderr))
        status = await proc.wait()
        _copy_back(sh.host.fs, root, seen, io)
        return status
    finally:
        if proc is not None and proc.returncode is None:  # the container was stopped
            proc.kill()
            await proc.wait()
        shutil.rmtree(root, ignore_errors=True)
