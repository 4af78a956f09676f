"""The ops dashboard's one JSON document: today's flights with their progress, touchpoint refer
rates and identify latency, and the purges coming up.

Several tablets poll it every few seconds, so a summary is reused for up to a second per airline
scope rather than re-running the percentile queries for each of them.
"""

from __future__ import annotations

import time
import weakref
from datetime import UTC, datetime, timedelta

import msgspec

from flighttoken.db.queries import flights as flight_q
from flighttoken.db.queries import operations as ops_q
from flighttoken.devices.model import Device
from flighttoken.flights.days import ops_day
from flighttoken.flights.model import FlightProgress, FlightState
from flighttoken.flights.scope import airline_of
from flighttoken.flights.service import progress_of
from flighttoken.services import Services
from flighttoken.vocabulary import DecisionReason, DeviceKind

DEFAULT_PURGE_GRACE_S = 7200
PURGE_LOOKAHEAD = timedelta(hours=24)
CACHE_SECONDS = 1.0
_cache: weakref.WeakKeyDictionary[Services, dict[str | None, tuple[float, OpsSummary]]] = weakref.WeakKeyDictionary()


class TouchpointStats(msgspec.Struct):
    touchpoint: DeviceKind
    decisions: int
    refers: int
    refer_rate: float
    median_ms: float | None
    p95_ms: float | None
    refer_reasons: dict[DecisionReason, int]
    """Refers by reason; ``refer_rate`` of each is its count / ``decisions``."""


class PurgeDue(msgspec.Struct):
    flight_id: str
    flight: str
    state: FlightState
    scheduled_departure: datetime
    due_at: datetime
    overdue: bool
    templates: int


class OpsSummary(msgspec.Struct):
    generated_at: datetime
    timezone: str
    day_start: datetime
    day_end: datetime
    airline: str | None
    """The airline this key is confined to; None for an admin key (every airline)."""
    refresh_s: float
    flights: list[FlightProgress]
    touchpoints: list[TouchpointStats]
    purges: list[PurgeDue]


def purge_grace_s(services: Services) -> float:
    # The purge owns this setting; until it exists, the documented default applies.
    return float(getattr(services.settings.privacy, "purge_grace_s", DEFAULT_PURGE_GRACE_S))


async def summary(services: Services, viewer: Device) -> OpsSummary:
    scope = airline_of(viewer)
    cached = _cache.setdefault(services, {}).get(scope)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    result = await _build(services, scope)
    _cache[services][scope] = (time.monotonic() + CACHE_SECONDS, result)
    return result


async def _build(services: Services, scope: str | None) -> OpsSummary:
    settings, pool = services.settings, services.db()
    now = datetime.now(UTC)
    start, end = ops_day(settings.operations.ops_timezone, now)
    flights = await flight_q.list_between(pool, start, end, scope)
    progress = await progress_of(services, flights)

    latency = await ops_q.touchpoint_latency(pool, start, now, scope)
    reasons: dict[str, dict[DecisionReason, int]] = {}
    for r in await ops_q.touchpoint_refers(pool, start, now, scope):
        reasons.setdefault(r["touchpoint"], {})[r["reason"]] = r["n"]
    touchpoints = [
        TouchpointStats(touchpoint=r["touchpoint"], decisions=r["decisions"], refers=r["refers"],
                        refer_rate=round(r["refers"] / r["decisions"], 4) if r["decisions"] else 0.0,
                        median_ms=_ms(r["median_ms"]), p95_ms=_ms(r["p95_ms"]),
                        refer_reasons=reasons.get(r["touchpoint"], {}))
        for r in latency]

    purges = [
        PurgeDue(flight_id=str(r["id"]), flight=f"{r['airline']}{r['number']}", state=FlightState(r["state"]),
                 scheduled_departure=r["scheduled_departure"], due_at=r["due_at"], overdue=r["due_at"] < now,
                 templates=r["templates"])
        for r in await ops_q.purges_due(pool, now + PURGE_LOOKAHEAD, purge_grace_s(services), scope)]
    return OpsSummary(generated_at=now, timezone=settings.operations.ops_timezone, day_start=start, day_end=end,
                      airline=scope, refresh_s=settings.operations.ops_refresh_s, flights=progress,
                      touchpoints=touchpoints, purges=purges)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)
