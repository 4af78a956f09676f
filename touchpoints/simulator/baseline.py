"""Raw model throughput measured through the final wave's rush: the baseline the ratio is held to.

A shared machine's speed drifts by a fifth within minutes, so a baseline taken only before and
after the day measures the neighbours as much as the service. With a final wave, the simulator
pauses the day just before the wave and then every ``every_s`` seconds of the rush: new requests
wait, those in flight finish, and the bare models are timed while the service idles. The rush's
ratio is then held to raw interpolated at each of its seconds (report.raw_reference).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from touchpoints.simulator.recorder import Recorder

Measure = Callable[[str], Awaitable[dict[str, Any] | None]]


class RushBaseline:
    def __init__(self, measure: Measure, rec: Recorder, *, saturation_level: int, every_s: float = 15.0,
                 say: Callable[[str], None] = lambda _: None) -> None:
        self._measure, self._rec, self._level, self._every_s, self._say = measure, rec, saturation_level, every_s, say
        self.measurements: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def at_wave(self) -> None:
        """The runner's ``before_wave`` hook: it runs with the day already paused."""
        await self._take("wave_release")
        self._task = asyncio.create_task(self._through_the_rush())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _through_the_rush(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            over = self._rush_over()
            async with self._rec.paused():
                await self._take("rush_end" if over else "rush")
            if over:
                return

    def _rush_over(self, span_s: float = 2.0) -> bool:
        since = self._rec.now() - span_s
        return all(n_id < self._level for t, n_id, _ in self._rec.samples if t >= since)

    async def _take(self, when: str) -> None:
        measured = await self._measure(when)
        if measured:
            self.measurements.append(measured)
            self._say(f"simulate: raw model throughput ({when}) {measured['faces_per_s']} faces/s")
