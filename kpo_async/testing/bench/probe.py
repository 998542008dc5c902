"""A trigger that measures the triggerer's event-loop lag from inside the real triggerer.

It sleeps `interval` seconds in a loop and records by how much each sleep overshoots; every
`report_seconds` it logs one line with the overshoots (ms) since the last report. The line lands in
the probe task's trigger log file, where the benchmark reads it. Its first act is importing the
modules named in `preload`, so the triggerer's baseline memory already holds the measured
trigger's imports (their one-time cost is not charged to the deferred pods).
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

PROBE_MARK = "kpo-bench-lag-ms"


class LagProbeTrigger(BaseTrigger):
    def __init__(
        self, *, interval: float = 0.05, report_seconds: float = 2.0, preload: list[str] | None = None
    ) -> None:
        super().__init__()
        self.interval = interval
        self.report_seconds = report_seconds
        self.preload = list(preload or [])

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "kpo_async.testing.bench.probe.LagProbeTrigger",
            {"interval": self.interval, "report_seconds": self.report_seconds, "preload": self.preload},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        for name in self.preload:
            importlib.import_module(name)
        self.log.info(f"{PROBE_MARK} preloaded {self.preload}")
        samples: list[float] = []
        reported = time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            after = time.monotonic()
            samples.append(max(0.0, after - before - self.interval) * 1000)
            if after - reported >= self.report_seconds:
                self.log.info(f"{PROBE_MARK} {time.time():.3f} " + " ".join(f"{s:.1f}" for s in samples))
                samples = []
                reported = after
        yield TriggerEvent({})  # never reached: the probe runs until the triggerer stops
