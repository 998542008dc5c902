"""Byte sinks/sources the interpreter writes to and reads from, and a process's signal box."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

from kpo_async.testing.sim.fs import ContainerFS, FsError

SIGNALS = {
    "EXIT": 0,
    "HUP": 1,
    "INT": 2,
    "QUIT": 3,
    "KILL": 9,
    "USR1": 10,
    "USR2": 12,
    "PIPE": 13,
    "ALRM": 14,
    "TERM": 15,
    "CHLD": 17,
    "CONT": 18,
    "STOP": 19,
}
SIGNAL_NAMES = {v: k for k, v in SIGNALS.items()}


def parse_signal(spec: str) -> int | None:
    spec = spec.strip().upper()
    if spec.isdigit():
        n = int(spec)
        return n if n in SIGNAL_NAMES or 0 < n < 65 else None
    if spec.startswith("SIG"):
        spec = spec[3:]
    return SIGNALS.get(spec)


class Sink:
    def write(self, data: bytes) -> None:
        raise NotImplementedError


class NullSink(Sink):
    def write(self, data: bytes) -> None:
        pass


class BufferSink(Sink):
    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> None:
        self.buf += data


class CallbackSink(Sink):
    def __init__(self, fn: Callable[[bytes], None]) -> None:
        self.fn = fn

    def write(self, data: bytes) -> None:
        self.fn(data)


class FileSink(Sink):
    def __init__(self, fs: ContainerFS, path: str) -> None:
        self.fs = fs
        self.path = path

    def write(self, data: bytes) -> None:
        try:
            self.fs.write(self.path, data, append=True)
        except FsError:
            pass


class Source:
    async def read(self) -> bytes | None:
        """Next chunk, or None at end of input."""
        return None

    async def read_all(self) -> bytes:
        parts = []
        while True:
            chunk = await self.read()
            if chunk is None:
                return b"".join(parts)
            parts.append(chunk)


class BytesSource(Source):
    def __init__(self, data: bytes) -> None:
        self.data: bytes | None = data

    async def read(self) -> bytes | None:
        data, self.data = self.data, None
        return data if data else None


class QueueSource(Source):
    """stdin fed by an exec session; None in the queue closes it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.eof = False

    async def read(self) -> bytes | None:
        if self.eof:
            return None
        chunk = await self.queue.get()
        if chunk is None:
            self.eof = True
        return chunk


@dataclass
class IO:
    stdin: Source
    stdout: Sink
    stderr: Sink

    def with_(self, **kw: object) -> IO:
        return replace(self, **kw)  # type: ignore[arg-type]


class SignalBox:
    """Signals delivered to one simulated process (its shell checks them between commands)."""

    __slots__ = ("_event", "pending")

    def __init__(self) -> None:
        self.pending: list[int] = []
        self._event: asyncio.Event | None = None

    @property
    def event(self) -> asyncio.Event:
        """Set while signals are pending (created on first use: most processes never wait)."""
        if self._event is None:
            self._event = asyncio.Event()
            if self.pending:
                self._event.set()
        return self._event

    def send(self, sig: int) -> None:
        self.pending.append(sig)
        if self._event is not None:
            self._event.set()

    def take(self) -> list[int]:
        out, self.pending = self.pending, []
        if self._event is not None:
            self._event.clear()
        return out
