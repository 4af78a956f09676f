"""Asyncio micro-batcher: items from concurrent requests share one blocking call.

A lone request never waits: the batcher holds a batch open (at most ``max_wait_s``) only while other
requests are known to be on their way (:meth:`MicroBatcher.expecting`), and items that arrive while
batches run simply form the next one. At most ``max_in_flight`` batches run at once, each through
``run_blocking``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

import msgspec
import structlog

from flighttoken.executor import run_blocking

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class BatchStats(msgspec.Struct):
    batches: int = 0
    items: int = 0
    max_size: int = 0
    sizes: dict[int, int] = msgspec.field(default_factory=dict)
    """Batch size → how many batches had it."""


class MicroBatcher(Generic[T, R]):
    def __init__(self, run_batch: Callable[[list[T]], Sequence[R]], *, max_size: int, max_wait_s: float,
                 max_in_flight: int = 1, name: str = "batch") -> None:
        if max_size < 1 or max_in_flight < 1:
            raise ValueError("max_size and max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self._run_batch = run_batch
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.name = name
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._expected = 0
        self._sizes: Counter[int] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Mark a request that will probably ``submit`` soon (e.g. while its face is being detected)."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1
            if self._wake is not None:
                self._wake.set()  # the batch may be waiting for us only

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # asyncio primitives belong to one loop; a new loop (tests, CLI) gets fresh ones.
            self._loop, self._wake, self._worker = loop, asyncio.Event(), None
            self._slots = asyncio.Semaphore(self.max_in_flight)
            self._pending = [p for p in self._pending if not p[1].done()]
        fut: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, fut))
        assert self._wake is not None
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name=f"{self.name}-batcher")
        return await fut

    def stats(self) -> BatchStats:
        sizes = dict(sorted(self._sizes.items()))
        return BatchStats(batches=sum(sizes.values()), items=sum(k * v for k, v in sizes.items()),
                          max_size=max(sizes, default=0), sizes=sizes)

    def reset_stats(self) -> BatchStats:
        stats = self.stats()
        self._sizes.clear()
        return stats

    async def _work(self) -> None:
        assert self._wake is not None and self._slots is not None
        while self._pending:
            # Take a slot first: items keep arriving while every slot is busy, so batches grow.
            await self._slots.acquire()
            await self._gather()
            batch = []
            while self._pending and len(batch) < self.max_size:
                item, fut = self._pending.pop(0)
                if not fut.done():  # its caller was cancelled
                    batch.append((item, fut))
            if not batch:
                self._slots.release()
                continue
            self._sizes[len(batch)] += 1
            task = asyncio.get_running_loop().create_task(self._dispatch(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _dispatch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        assert self._slots is not None
        try:
            results = await run_blocking(self._run_batch, [item for item, _ in batch])
        except asyncio.CancelledError:
            for _, fut in batch:
                fut.cancel()
            raise
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            log.warning("batch_failed", batcher=self.name, size=len(batch), error=type(exc).__name__)
            return
        finally:
            self._slots.release()
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    async def _gather(self) -> None:
        """Wait (bounded) for more items while the batch has room and others are on their way."""
        assert self._wake is not None and self._loop is not None
        if self.max_wait_s <= 0:
            return
        deadline = self._loop.time() + self.max_wait_s
        while len(self._pending) < self.max_size and self._expected > 0:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)
