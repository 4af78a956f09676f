"""The privacy sweeper: one background task per instance, started once the galleries are loaded.

Each pass (the first one at start-up):
  * finishes purges a crash interrupted, and purges flights that are due: departed or cancelled
    but not purged (the process died before its closure hook ran), or not closed by scheduled
    departure + ``purge_grace_s``;
  * applies audit retention and expires idempotency keys past their 24 h (at most hourly).
Purges are idempotent, so several instances sweeping at once only repeat no-ops. Other instances
learn of a purge from its ``flight_closed`` sync event (and their periodic reconcile).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import msgspec
import structlog

from flighttoken.db.queries import privacy as q
from flighttoken.journey import idempotency
from flighttoken.privacy.purge import purge_flight, purge_flights
from flighttoken.privacy.retention import apply_retention
from flighttoken.services import Services

log = structlog.get_logger(__name__)
BATCH = 200
RETENTION_EVERY_S = 3600.0


class SweepReport(msgspec.Struct):
    purged: list[str] = msgspec.field(default_factory=list)
    failed: list[str] = msgspec.field(default_factory=list)
    retention: dict[str, int] | None = None
    idempotency_keys_expired: int | None = None


class Sweeper:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._task: asyncio.Task[None] | None = None
        self._last_retention = float("-inf")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="privacy-sweeper")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _loop(self) -> None:
        interval = self.services.settings.privacy.purge_sweep_interval_s
        while not self.services.shutting_down:
            try:
                await self.sweep_once()
            except Exception:  # a bad pass must not end the task; the next pass retries everything
                log.exception("privacy_sweep_failed")
            await asyncio.sleep(interval)

    async def sweep_once(self) -> SweepReport:
        report = SweepReport()
        await self._purge_due(report)
        if time.monotonic() - self._last_retention >= RETENTION_EVERY_S:
            self._last_retention = time.monotonic()
            report.retention = (await apply_retention(self.services)).deleted
            report.idempotency_keys_expired = await idempotency.expire(self.services)
        if report.purged or report.failed:
            log.info("privacy_sweep", purged=report.purged, failed=len(report.failed))
        return report

    async def _purge_due(self, report: SweepReport) -> None:
        pool, grace = self.services.db(), self.services.settings.privacy.purge_grace_s
        work: dict[uuid.UUID, str] = {r["flight_id"]: r["trigger"] for r in await q.unfinished_purges(pool, BATCH)}
        for r in await q.flights_due(pool, grace, BATCH):
            work.setdefault(r["id"], r["state"] if r["state"] in ("departed", "cancelled") else "grace_elapsed")
        if not work:
            return
        try:
            report.purged += [r.flight for r in await purge_flights(self.services, work)]
            return
        except Exception:
            log.exception("window_purge_failed_retrying_one_by_one", flights=len(work))
        for flight_id, trigger in work.items():  # so one bad flight cannot hold the others back
            try:
                report.purged.append((await purge_flight(self.services, flight_id, trigger)).flight)
            except Exception:
                log.exception("purge_failed_will_retry", flight_id=str(flight_id))
                report.failed.append(str(flight_id))


async def start_sweeper(services: Services, stack: contextlib.AsyncExitStack) -> Sweeper:
    """Start the sweeper; the exit stack stops it (before the pool closes)."""
    sweeper = Sweeper(services)
    await sweeper.start()
    stack.push_async_callback(sweeper.stop)
    return sweeper
