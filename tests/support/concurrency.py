"""Small asyncio helpers the tests share: bounded fan-out and waiting for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def gather_limited(coros: Iterable[Awaitable[T]], limit: int = 4) -> list[T]:
    """Run awaitables concurrently, at most ``limit`` at once (a few devices, not a stampede)."""
    gate = asyncio.Semaphore(limit)

    async def run(c: Awaitable[T]) -> T:
        async with gate:
            return await c

    return list(await asyncio.gather(*(run(c) for c in coros)))


async def within(seconds: float, condition: Callable[[], object]) -> float:
    """Poll ``condition`` until it holds (is truthy: a flag, a non-empty list); return how long it
    took, or fail after ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if condition():
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {seconds} s")
