"""One running container instance: its filesystem view, env, log, main process and exec'd processes.

The main process is either a shell script/builtin (shell package), a behaviour from the
`sim.kpo-async.io/behavior` annotation (timers only, lazy log) or nothing (no command: sleeps a
moment and exits 0).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kpo_async.identity import XCOM_RETURN_FILE
from kpo_async.testing.sim.behavior import Behavior
from kpo_async.testing.sim.fs import ContainerFS, FsError
from kpo_async.testing.sim.logs import BehaviorLog, ContainerLog, StoredLog
from kpo_async.testing.sim.shell import IO, BytesSource, CallbackSink, NullSink, SignalBox, Sink, run_process
from kpo_async.testing.sim.shell.io import Source


class ContainerRuntime:
    """Implements the shell's ShellHost for the main process (pid 1) of a container."""

    def __init__(
        self,
        hostname: str,
        fs: ContainerFS,
        env: dict[str, str],
        argv: list[str],
        behavior: Behavior | None,
        noop_seconds: float,
        max_log_bytes: int,
    ) -> None:
        self.hostname = hostname
        self.fs = fs
        self.env = env
        self.argv = argv
        self.behavior = behavior
        self.noop_seconds = noop_seconds
        self.signals = SignalBox()
        self.pid = 1
        self._next_pid = 1
        self.exec_procs: dict[int, ExecHost] = {}
        self.start_ns = time.time_ns()
        self.log: ContainerLog
        if behavior is not None:
            self.log = BehaviorLog(behavior, self.start_ns)
        else:
            self.log = StoredLog(max_log_bytes)
        #: Terminated reason override (behaviour "reason", OOMKilled...)
        self.reason: str | None = None
        self.done: asyncio.Future[int] = None  # type: ignore[assignment]  # set by start()
        self._timer: asyncio.TimerHandle | None = None
        self.killed = False
        #: the user every process runs as (the container's runAsUser)
        self.uid = 0

    # --- ShellHost ---
    def processes(self) -> list[tuple[int, list[str]]]:
        """(pid, argv) of every running process, for pgrep."""
        return [(1, self.argv), *((pid, proc.argv) for pid, proc in self.exec_procs.items())]

    def main_sink(self, fd: int) -> Sink:
        log = self.log
        if isinstance(log, StoredLog):
            return CallbackSink(lambda data: log.write(fd, data))
        return NullSink()

    def kill(self, pid: int, sig: int) -> bool:
        if pid == 1:
            self.signal(sig)
            return True
        proc = self.exec_procs.get(pid)
        if proc is None:
            return False
        if sig:
            proc.signals.send(sig)
        return True

    def new_pid(self) -> int:
        self._next_pid += 1
        return self._next_pid

    # --- lifecycle ---
    def start(self) -> asyncio.Future[int]:
        """Start the main process; `done` resolves with its exit code."""
        loop = asyncio.get_running_loop()
        if self.behavior is None and self.argv:
            self.done = asyncio.ensure_future(self._main())
        else:
            # behaviour / no command: no coroutine at all, just a timer (cheap at thousands of pods)
            self.done = loop.create_future()
            seconds = self.behavior.duration_seconds if self.behavior is not None else self.noop_seconds
            self._timer = loop.call_later(max(0.0, seconds), self._finish_timer)
        self.done.add_done_callback(self._cancel_execs)
        return self.done

    def _cancel_execs(self, _: object) -> None:
        for proc in list(self.exec_procs.values()):
            proc.cancel()

    def _finish_timer(self) -> None:
        if self.done.done():
            return
        b = self.behavior
        if b is None:
            self.done.set_result(0)
            return
        self.log.close(self.start_ns + int(b.duration_seconds * 1e9))
        data = b.xcom_bytes()
        if data is not None:
            vol, _, _ = self.fs.resolve(XCOM_RETURN_FILE)
            if vol is not self.fs.scratch:
                try:
                    self.fs.write(XCOM_RETURN_FILE, data)
                except FsError:
                    pass
        if b.reason:
            self.reason = b.reason
        self.done.set_result(b.exit_code)

    def _finish_signal(self, code: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.done.done():
            self.log.close()
            self.done.set_result(code)

    @property
    def running(self) -> bool:
        return self.done is not None and not self.done.done()

    def signal(self, sig: int) -> None:
        if not self.running:
            return
        if sig == 9:
            self.force_kill()
        elif self._timer is not None:
            self._finish_signal(128 + sig)  # these processes trap nothing
        else:
            self.signals.send(sig)

    def force_kill(self) -> None:
        if not self.running:
            return
        self.killed = True
        if self._timer is not None:
            self._finish_signal(137)
        else:
            self.done.cancel()

    def cancel(self) -> None:
        """Shutdown of the whole simulator."""
        if self._timer is not None:
            self._timer.cancel()
        if self.done is not None and not self.done.done():
            self.done.cancel()

    async def _main(self) -> int:
        try:
            stdout, stderr = self.main_sink(1), self.main_sink(2)
            return await run_process(self, self.env, self.argv, IO(BytesSource(b""), stdout, stderr))
        except asyncio.CancelledError:
            if not self.killed:
                raise
            return 137

    def termination_message(self, policy: str, path: str, exit_code: int) -> str | None:
        try:
            msg = self.fs.read(path).decode(errors="replace")
        except FsError:
            msg = ""
        if msg:
            return msg[:4096]
        if policy == "FallbackToLogsOnError" and exit_code != 0:
            return self.log.tail_text(80, 2048) or None
        return None

    def exec_host(self) -> ExecHost:
        return ExecHost(self)


class ExecHost:
    """ShellHost of a process started with exec: own pid and signals, the container's files."""

    def __init__(self, container: ContainerRuntime) -> None:
        self.container = container
        self.fs = container.fs
        self.hostname = container.hostname
        self.signals = SignalBox()
        self.pid = container.new_pid()
        self.uid = container.uid
        self.argv: list[str] = []
        self.task: asyncio.Task[Any] | None = None

    def processes(self) -> list[tuple[int, list[str]]]:
        return self.container.processes()

    def main_sink(self, fd: int) -> Sink:
        return self.container.main_sink(fd)

    def kill(self, pid: int, sig: int) -> bool:
        return self.container.kill(pid, sig)

    def new_pid(self) -> int:
        return self.container.new_pid()

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def run(self, argv: list[str], stdin: Source, stdout: Sink, stderr: Sink) -> int:
        self.argv = argv
        self.container.exec_procs[self.pid] = self
        self.task = asyncio.current_task()
        try:
            return await run_process(self, dict(self.container.env), argv, IO(stdin, stdout, stderr))
        finally:
            self.container.exec_procs.pop(self.pid, None)
