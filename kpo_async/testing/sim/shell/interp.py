"""The interpreter: runs a parsed script against a simulated process (its fs, log, signals)."""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import re
from typing import Protocol

from kpo_async.testing.sim.fs import ENOENT, ContainerFS, FsError
from kpo_async.testing.sim.shell import parser as p
from kpo_async.testing.sim.shell.expand import ExpansionError, expand_str, expand_words
from kpo_async.testing.sim.shell.io import (
    IO,
    BufferSink,
    BytesSource,
    FileSink,
    NullSink,
    SignalBox,
    Sink,
    Source,
)


class ShellExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class LoopControl(Exception):
    def __init__(self, kind: str, levels: int) -> None:
        super().__init__(kind)
        self.kind = kind
        self.levels = levels


class ShellHost(Protocol):
    """What a shell needs from the simulated process it runs in."""

    fs: ContainerFS
    hostname: str
    signals: SignalBox
    pid: int

    def main_sink(self, fd: int) -> Sink: ...

    def kill(self, pid: int, sig: int) -> bool: ...

    def new_pid(self) -> int: ...


_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def quote(arg: str) -> str:
    if _SAFE.match(arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


class Shell:
    def __init__(
        self,
        host: ShellHost,
        env: dict[str, str],
        argv0: str = "sh",
        args: list[str] | None = None,
        xtrace: bool = False,
        errexit: bool = False,
    ) -> None:
        self.host = host
        self.vars: dict[str, str] = dict(env)
        self.exported: set[str] = set(env)
        self.argv0 = argv0
        self.args: list[str] = list(args or [])
        self.status = 0
        self.traps: dict[int, str] = {}
        self.xtrace = xtrace
        self.errexit = errexit
        self.cwd = "/"
        self.jobs: dict[int, asyncio.Task[int]] = {}
        self.last_bg_pid: int | None = None
        self.cond_depth = 0
        self.owns_signals = True
        self.in_trap = False
        self.loop_depth = 0
        self.cur_io = IO(BytesSource(b""), NullSink(), NullSink())
        self._andor_exempt = False

    # --- variables ---
    def get_var(self, name: str) -> str | None:
        if name == "PWD":
            return self.cwd
        if name == "RANDOM":
            import random

            return str(random.randint(0, 32767))
        return self.vars.get(name)

    def set_var(self, name: str, value: str) -> None:
        self.vars[name] = value

    def special(self, ch: str) -> str:
        if ch == "?":
            return str(self.status)
        if ch == "$":
            return str(self.host.pid)
        if ch == "#":
            return str(len(self.args))
        if ch == "!":
            return "" if self.last_bg_pid is None else str(self.last_bg_pid)
        if ch in "@*":
            return " ".join(self.args)
        if ch == "-":
            return ("e" if self.errexit else "") + ("x" if self.xtrace else "")
        if ch.isdigit():
            n = int(ch)
            if n == 0:
                return self.argv0
            return self.args[n - 1] if n <= len(self.args) else ""
        return ""

    def resolve(self, path: str) -> str:
        return posixpath.normpath(posixpath.join(self.cwd, path)) if path else self.cwd

    def subshell(self) -> Shell:
        sub = Shell.__new__(Shell)
        sub.__dict__.update(self.__dict__)
        sub.vars = dict(self.vars)
        sub.exported = set(self.exported)
        sub.args = list(self.args)
        sub.traps = {sig: act for sig, act in self.traps.items() if act == ""}
        sub.jobs = {}
        sub.owns_signals = False
        sub.loop_depth = 0
        return sub

    def env(self) -> dict[str, str]:
        return {k: v for k, v in self.vars.items() if k in self.exported}

    # --- entry points ---
    async def run_script(self, script: str, io: IO) -> int:
        """Run a whole script as a process: EXIT trap, `exit`, fatal errors, final status."""
        self.cur_io = io
        try:
            try:
                tree = p.parse(script)
            except p.ShellSyntaxError as e:
                io.stderr.write(f"sh: syntax error: {e}\n".encode())
                return 2
            except p.Unsupported as e:
                io.stderr.write(
                    f"sh: {e} are not supported by the kpo-async simulator "
                    "(see docs/embedded-cluster.md)\n".encode()
                )
                return 127
            try:
                self.status = await self.eval_seq(tree, io)
            except ShellExit as e:
                self.status = e.status
            except ExpansionError as e:
                io.stderr.write(f"sh: {e}\n".encode())
                self.status = e.status
            except LoopControl:
                pass
            await self._run_exit_trap(io)
            return self.status
        finally:
            for task in self.jobs.values():
                task.cancel()

    async def run_stream(self, io: IO) -> int:
        """`sh` reading its script from stdin: each complete command runs as soon as it arrives
        (an exec session writing commands to an interactive shell sees their effect at once)."""
        self.cur_io = io
        pending = ""
        try:
            try:
                while True:
                    chunk = await self._read_or_signal(io.stdin)
                    if chunk is None:
                        break
                    pending += chunk.decode(errors="replace")
                    head, newline, tail = pending.rpartition("\n")
                    if not newline:
                        continue
                    try:
                        tree = p.parse(head + "\n")
                    except p.ShellSyntaxError:
                        continue  # an unfinished compound command: wait for more lines
                    except p.Unsupported as e:
                        io.stderr.write(f"sh: {e} are not supported by the kpo-async simulator\n".encode())
                        pending, self.status = tail, 127
                        continue
                    pending = tail
                    self.status = await self.eval_seq(tree, io)
                if pending.strip():
                    self.status = await self.run_string(pending, io)
            except ShellExit as e:
                self.status = e.status
            except ExpansionError as e:
                io.stderr.write(f"sh: {e}\n".encode())
                self.status = e.status
            except LoopControl:
                pass
            await self._run_exit_trap(io)
            return self.status
        finally:
            for task in self.jobs.values():
                task.cancel()

    async def _read_or_signal(self, stdin: Source) -> bytes | None:
        """The next stdin chunk; a signal arriving meanwhile is handled (an untrapped one exits)."""
        while True:
            await self.check_signals()
            read = asyncio.ensure_future(stdin.read())
            if not self.owns_signals:
                return await read
            signal = asyncio.ensure_future(self.host.signals.event.wait())
            try:
                await asyncio.wait({read, signal}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                signal.cancel()
            if read.done():
                return read.result()
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read

    async def _run_exit_trap(self, io: IO) -> None:
        action = self.traps.pop(0, None)
        if action:
            try:
                saved = self.status
                await self.run_string(action, io)
                self.status = saved
            except ShellExit as e:
                self.status = e.status
            except ExpansionError as e:
                io.stderr.write(f"sh: {e}\n".encode())

    async def run_string(self, script: str, io: IO) -> int:
        """Parse and run in this shell (eval, traps); errors become statuses."""
        try:
            tree = p.parse(script)
        except p.ShellSyntaxError as e:
            io.stderr.write(f"sh: syntax error: {e}\n".encode())
            return 2
        except p.Unsupported as e:
            io.stderr.write(f"sh: {e} are not supported by the kpo-async simulator\n".encode())
            return 127
        return await self.eval_seq(tree, io)

    async def run_in_subshell(self, script: str | p.Seq, io: IO) -> int:
        sub = self.subshell()
        try:
            if isinstance(script, str):
                return await sub.run_string(script, io)
            return await sub.eval_seq(script, io)
        except ShellExit as e:
            return e.status
        except ExpansionError as e:
            io.stderr.write(f"sh: {e}\n".encode())
            return e.status
        except LoopControl:
            return 0

    async def command_subst(self, script: str) -> str:
        buf = BufferSink()
        status = await self.run_in_subshell(script, self.cur_io.with_(stdout=buf))
        self.status = status
        self._subst_status = status
        return buf.buf.decode(errors="replace").rstrip("\n")

    # --- signals ---
    async def check_signals(self) -> None:
        if not self.owns_signals or self.in_trap or not self.host.signals.pending:
            return
        for sig in self.host.signals.take():
            action = self.traps.get(sig)
            if action is None:
                raise ShellExit(128 + sig)
            if action == "":
                continue
            self.in_trap = True
            try:
                saved = self.status
                await self.run_string(action, self.cur_io)
                self.status = saved
            finally:
                self.in_trap = False

    def die_if_untrapped(self) -> None:
        """A signal without a trap kills the process even in the middle of a command."""
        if not self.owns_signals:
            return
        for sig in self.host.signals.pending:
            if self.traps.get(sig) is None:
                self.host.signals.take()
                raise ShellExit(128 + sig)
        # drop ignored signals so that waiting on the event does not spin
        if all(self.traps.get(s) == "" for s in self.host.signals.pending):
            self.host.signals.take()

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if not self.owns_signals or self.host.signals.pending:
                # signals already pending are trapped ones; sh runs the trap after the child exits
                await asyncio.sleep(remaining)
                return
            try:
                await asyncio.wait_for(self.host.signals.event.wait(), remaining)
            except asyncio.TimeoutError:
                return
            self.die_if_untrapped()

    async def wait_signal_or(self, event: asyncio.Event) -> None:
        """Wait for `event` or any signal (an untrapped one kills the process)."""
        if self.owns_signals and self.host.signals.pending:
            self.die_if_untrapped()
            return
        waiters = [asyncio.ensure_future(event.wait())]
        if self.owns_signals:
            waiters.append(asyncio.ensure_future(self.host.signals.event.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        self.die_if_untrapped()

    # --- evaluation ---
    async def eval(self, node: object, io: IO) -> int:
        if isinstance(node, p.Simple):
            return await self.eval_simple(node, io)
        if isinstance(node, p.AndOr):
            return await self.eval_andor(node, io)
        if isinstance(node, p.Pipeline):
            return await self.eval_pipeline(node, io)
        if isinstance(node, p.Seq):
            return await self.eval_seq(node, io)
        rio = await self.apply_redirs(node.redirs, io)  # type: ignore[attr-defined]
        if rio is None:
            return 1
        if isinstance(node, p.If):
            return await self.eval_if(node, rio)
        if isinstance(node, p.For):
            return await self.eval_for(node, rio)
        if isinstance(node, p.Loop):
            return await self.eval_loop(node, rio)
        if isinstance(node, p.Group):
            if node.subshell:
                return await self.run_in_subshell(node.body, rio)
            return await self.eval_seq(node.body, rio)
        raise TypeError(node)

    async def eval_seq(self, seq: p.Seq, io: IO) -> int:
        status = 0
        for node, background in seq.items:
            if background:
                self.start_job(node, io)
                status = 0
            else:
                self._andor_exempt = False
                status = await self.eval(node, io)
                self.status = status
                if status and self.errexit and self.cond_depth == 0 and self._errexit_applies(node):
                    raise ShellExit(status)
            await self.check_signals()
        return status

    def _errexit_applies(self, node: object) -> bool:
        if isinstance(node, p.AndOr):
            return not self._andor_exempt
        if isinstance(node, p.Pipeline):
            return not node.negate
        return isinstance(node, p.Simple) or (isinstance(node, p.Group) and node.subshell)

    async def eval_cond(self, seq: p.Seq, io: IO) -> int:
        self.cond_depth += 1
        try:
            return await self.eval_seq(seq, io)
        finally:
            self.cond_depth -= 1

    async def eval_andor(self, node: p.AndOr, io: IO) -> int:
        self.cond_depth += 1
        try:
            status = await self.eval(node.first, io)
        finally:
            self.cond_depth -= 1
        self.status = status
        for k, (op, rhs) in enumerate(node.rest):
            if (op == "&&" and status != 0) or (op == "||" and status == 0):
                self._andor_exempt = True
                continue
            last = k == len(node.rest) - 1
            if not last:
                self.cond_depth += 1
            try:
                status = await self.eval(rhs, io)
            finally:
                if not last:
                    self.cond_depth -= 1
            self.status = status
            self._andor_exempt = not last
        return status

    async def eval_pipeline(self, node: p.Pipeline, io: IO) -> int:
        data: bytes | None = None
        status = 0
        if node.negate:
            self.cond_depth += 1
        try:
            for k, cmd in enumerate(node.cmds):
                last = k == len(node.cmds) - 1
                stdin = io.stdin if data is None else BytesSource(data)
                if last:
                    sub_io = io.with_(stdin=stdin)
                    if len(node.cmds) > 1:
                        status = await self.run_in_subshell(p.Seq([(cmd, False)]), sub_io)
                    else:
                        status = await self.eval(cmd, sub_io)
                else:
                    buf = BufferSink()
                    await self.run_in_subshell(p.Seq([(cmd, False)]), io.with_(stdin=stdin, stdout=buf))
                    data = bytes(buf.buf)
        finally:
            if node.negate:
                self.cond_depth -= 1
        return int(status == 0) if node.negate else status

    async def eval_if(self, node: p.If, io: IO) -> int:
        for cond, body in node.branches:
            if await self.eval_cond(cond, io) == 0:
                return await self.eval_seq(body, io)
        if node.else_ is not None:
            return await self.eval_seq(node.else_, io)
        return 0

    async def _loop_body(self, body: p.Seq, io: IO) -> tuple[int, str | None]:
        self.loop_depth += 1
        # A loop that never awaits (`while true; do :; done`) must not freeze the whole simulator.
        await asyncio.sleep(0)
        try:
            return await self.eval_seq(body, io), None
        except LoopControl as lc:
            if lc.levels > 1:
                lc.levels -= 1
                raise
            return 0, lc.kind
        finally:
            self.loop_depth -= 1

    async def eval_for(self, node: p.For, io: IO) -> int:
        words = await expand_words(self, node.words) if node.words is not None else list(self.args)
        status = 0
        for w in words:
            self.set_var(node.var, w)
            status, ctl = await self._loop_body(node.body, io)
            if ctl == "break":
                break
        return status

    async def eval_loop(self, node: p.Loop, io: IO) -> int:
        status = 0
        poll = None if self.xtrace else _poll_interval(node)
        while True:
            c = await self.eval_cond(node.cond, io)
            if (c == 0) == node.until:
                return status
            if poll is not None:
                await self._idle_poll(poll)
                status = 0
                await self.check_signals()
                continue
            status, ctl = await self._loop_body(node.body, io)
            if ctl == "break":
                return status

    async def _idle_poll(self, interval: float) -> None:
        """`sleep N` in a loop whose condition only tests files: sleep until a file changes (or a
        signal arrives), then up to the next multiple of N -- the same observable timing as
        polling, without waking thousands of idle sidecars every half second."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await self.wait_signal_or(self.host.fs.notifier.event())
        elapsed = loop.time() - t0
        periods = max(1, -(-elapsed // interval)) if interval > 0 else 1
        await self.sleep(t0 + periods * interval - loop.time())

    def start_job(self, node: object, io: IO) -> None:
        sub = self.subshell()
        pid = self.host.new_pid()

        async def job() -> int:
            try:
                return await sub.eval_seq(p.Seq([(node, False)]), io)
            except ShellExit as e:
                return e.status
            except ExpansionError as e:
                io.stderr.write(f"sh: {e}\n".encode())
                return e.status
            except LoopControl:
                return 0

        self.jobs[pid] = asyncio.ensure_future(job())
        self.last_bg_pid = pid

    async def eval_simple(self, node: p.Simple, io: IO) -> int:
        self.cur_io = io
        self._subst_status: int | None = None
        argv = await expand_words(self, node.words)
        assigns = [(name, await expand_str(self, value)) for name, value in node.assigns]
        if not argv:
            if self.xtrace and assigns:
                io.stderr.write(("+ " + " ".join(quote(f"{n}={v}") for n, v in assigns) + "\n").encode())
            for name, value in assigns:
                self.set_var(name, value)
            if node.redirs and await self.apply_redirs(node.redirs, io) is None:
                return 1
            return self._subst_status if self._subst_status is not None else 0
        if self.xtrace:
            shown = [f"{n}={v}" for n, v in assigns] + argv
            io.stderr.write(("+ " + " ".join(quote(a) for a in shown) + "\n").encode())
        rio = await self.apply_redirs(node.redirs, io) if node.redirs else io
        if rio is None:
            return 1
        self.cur_io = rio
        from kpo_async.testing.sim.shell.builtins import run_command

        return await run_command(self, argv, rio, assigns)

    # --- redirections ---
    def open_sink(self, target: str, append: bool, io: IO) -> Sink | None:
        special = {
            "/dev/null": NullSink(),
            "/dev/stdout": io.stdout,
            "/dev/stderr": io.stderr,
            "/proc/self/fd/1": io.stdout,
            "/proc/self/fd/2": io.stderr,
            "/dev/fd/1": io.stdout,
            "/dev/fd/2": io.stderr,
        }
        if target in special:
            return special[target]
        if target in ("/proc/1/fd/1", "/proc/1/fd/2"):
            return self.host.main_sink(int(target[-1]))
        path = self.resolve(target)
        try:
            self.host.fs.write(path, b"", append=append)
        except FsError as e:
            msg = "nonexistent directory" if str(e) == ENOENT else str(e)
            io.stderr.write(f"sh: can't create {target}: {msg}\n".encode())
            return None
        return FileSink(self.host.fs, path)

    async def apply_redirs(self, redirs: list[p.Redir], io: IO) -> IO | None:
        for r in redirs:
            target = await expand_str(self, r.target)
            if r.op in (">&", "<&"):
                fd = r.fd if r.fd is not None else (0 if r.op == "<&" else 1)
                if target == "-":
                    sink: Sink = NullSink()
                elif target in ("1", "2"):
                    sink = io.stdout if target == "1" else io.stderr
                elif target == "0":
                    continue
                elif r.op == ">&" and r.fd is None:
                    opened = self.open_sink(target, False, io)
                    if opened is None:
                        return None
                    io = io.with_(stdout=opened, stderr=opened)
                    continue
                else:
                    io.stderr.write(f"sh: {target}: bad file descriptor\n".encode())
                    return None
                if fd == 1:
                    io = io.with_(stdout=sink)
                elif fd == 2:
                    io = io.with_(stderr=sink)
            elif r.op in (">", ">|", ">>", "&>", "&>>"):
                opened = self.open_sink(target, r.op.endswith(">>"), io)
                if opened is None:
                    return None
                if r.op.startswith("&"):
                    io = io.with_(stdout=opened, stderr=opened)
                elif (r.fd if r.fd is not None else 1) == 2:
                    io = io.with_(stderr=opened)
                elif (r.fd if r.fd is not None else 1) == 1:
                    io = io.with_(stdout=opened)
            elif r.op == "<":
                if target == "/dev/null":
                    io = io.with_(stdin=BytesSource(b""))
                    continue
                try:
                    data = self.host.fs.read(self.resolve(target))
                except FsError as e:
                    io.stderr.write(f"sh: can't open '{target}': {e}\n".encode())
                    return None
                io = io.with_(stdin=BytesSource(data))
        return io


def _poll_interval(node: p.Loop) -> float | None:
    """N if the loop is `while/until [ file tests ]; do sleep N; done`, else None."""
    if len(node.cond.items) != 1 or len(node.body.items) != 1:
        return None
    cond, bg1 = node.cond.items[0]
    body, bg2 = node.body.items[0]
    if bg1 or bg2 or not isinstance(cond, p.Simple) or not isinstance(body, p.Simple):
        return None
    if cond.assigns or cond.redirs or body.assigns or body.redirs or not cond.words:
        return None
    if cond.words[0] not in ("[", "test", "[["):
        return None
    if any("$(" in w or "`" in w for w in cond.words):
        return None
    if len(body.words) != 2 or body.words[0] != "sleep":
        return None
    try:
        value = float(body.words[1])
    except ValueError:
        return None
    return value if value > 0 else None
