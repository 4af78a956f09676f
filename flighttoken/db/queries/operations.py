"""Airline operations: flight progress, touchpoint statistics and purges due (token look-ups: ``tokens.py``).

``airline`` arguments confine a query to one airline's flights (an airline_ops key); None means all.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from flighttoken.db.connection import Executor, one
from flighttoken.vocabulary import DecisionReason, ManualBoardingReason

# Live and used tokens: everything but a revocation counts as enrolled.
_PROGRESS = """
    SELECT flight_id,
           count(*) FILTER (WHERE state <> 'revoked') AS enrolled,
           count(*) FILTER (WHERE state <> 'revoked' AND enrolled_by = 'e_security_gate') AS late_enrolled,
           count(*) FILTER (WHERE cleared_at IS NOT NULL AND state <> 'revoked') AS immigration_cleared,
           count(*) FILTER (WHERE last_lounge_at IS NOT NULL AND boarded_at IS NULL
                            AND state = 'immigration_cleared') AS in_lounge,
           count(*) FILTER (WHERE boarded_at IS NOT NULL AND state <> 'revoked') AS boarded,
           -- Of those, boarded by hand at the gate (journey/manual.py); the rest boarded by face.
           count(*) FILTER (WHERE boarded_at IS NOT NULL AND state <> 'revoked'
                            AND EXISTS (SELECT FROM manual_boardings m WHERE m.token_id = tokens.id))
               AS boarded_manual,
           count(*) FILTER (WHERE state = 'revoked' AND end_reason = 'opted_out') AS opted_out,
           count(*) FILTER (WHERE state = 'revoked') AS revoked
    FROM tokens WHERE flight_id = ANY($1::uuid[]) GROUP BY flight_id"""

PROGRESS_FIELDS = ("enrolled", "late_enrolled", "immigration_cleared", "in_lounge", "boarded", "boarded_manual",
                   "opted_out", "revoked")


async def progress(conn: Executor, flight_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    rows = await conn.fetch(_PROGRESS, list(flight_ids))
    out: dict[uuid.UUID, dict[str, int]] = {f: dict.fromkeys(PROGRESS_FIELDS, 0) for f in flight_ids}
    for r in rows:
        out[r["flight_id"]] = {k: r[k] for k in PROGRESS_FIELDS}
    return out


async def manual_boarding_reasons(conn: Executor,
                                  flight_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[ManualBoardingReason, int]]:
    """Manual boardings of each flight by reason code, counted as ``progress`` counts them (not revoked)."""
    rows = await conn.fetch(
        "SELECT m.flight_id, m.reason_code, count(*) AS n FROM manual_boardings m JOIN tokens t ON t.id = m.token_id"
        " WHERE m.flight_id = ANY($1::uuid[]) AND t.state <> 'revoked' GROUP BY m.flight_id, m.reason_code",
        list(flight_ids))
    out: dict[uuid.UUID, dict[ManualBoardingReason, int]] = {f: {} for f in flight_ids}
    for r in rows:
        out[r["flight_id"]][r["reason_code"]] = r["n"]
    return out


async def refer_reasons(conn: Executor,
                        flight_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[DecisionReason, int]]:
    """Refer decisions attributed to each flight (the matched passenger's), by reason."""
    rows = await conn.fetch(
        "SELECT flight_id, reason, count(*) AS n FROM journey_events"
        " WHERE flight_id = ANY($1::uuid[]) AND decision = 'refer' GROUP BY flight_id, reason", list(flight_ids))
    out: dict[uuid.UUID, dict[DecisionReason, int]] = {f: {} for f in flight_ids}
    for r in rows:
        out[r["flight_id"]][r["reason"]] = r["n"]
    return out


# Unattributed events (no face, no match) belong to no airline, so an airline's view leaves them out.
_EVENTS_IN_SCOPE = """
    FROM journey_events e LEFT JOIN flights f ON f.id = e.flight_id
    WHERE e.at >= $1 AND e.at < $2 AND ($3::text IS NULL OR f.airline = $3)"""


async def touchpoint_latency(conn: Executor, start: datetime, end: datetime,
                             airline: str | None) -> list[asyncpg.Record]:
    """Per touchpoint kind: decisions, refers, median and p95 identify latency (ms)."""
    return await conn.fetch(
        "SELECT e.touchpoint, count(*) AS decisions, count(*) FILTER (WHERE e.decision = 'refer') AS refers,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY e.latency_ms) AS median_ms,"
        " percentile_cont(0.95) WITHIN GROUP (ORDER BY e.latency_ms) AS p95_ms"
        + _EVENTS_IN_SCOPE + " GROUP BY e.touchpoint ORDER BY e.touchpoint", start, end, airline)


async def touchpoint_refers(conn: Executor, start: datetime, end: datetime,
                            airline: str | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT e.touchpoint, e.reason, count(*) AS n" + _EVENTS_IN_SCOPE
        + " AND e.decision = 'refer' GROUP BY e.touchpoint, e.reason ORDER BY n DESC, e.reason",
        start, end, airline)


async def purges_due(conn: Executor, until: datetime, grace_s: float, airline: str | None,
                     limit: int = 50) -> list[asyncpg.Record]:
    """Flights whose data key still exists and whose purge (departure + grace) falls before ``until``,
    overdue ones included, soonest first."""
    return await conn.fetch(
        "SELECT f.id, f.airline, f.number, f.state, f.scheduled_departure,"
        " f.scheduled_departure + make_interval(secs => $2) AS due_at,"
        " (SELECT count(*) FROM templates tp WHERE tp.flight_id = f.id) AS templates"
        " FROM flights f JOIN flight_keys k ON k.flight_id = f.id"
        " WHERE f.scheduled_departure + make_interval(secs => $2) <= $1 AND ($3::text IS NULL OR f.airline = $3)"
        " ORDER BY due_at, f.airline, f.number LIMIT $4", until, grace_s, airline, limit)


async def overdue_purges(conn: Executor, now: datetime, grace_s: float) -> tuple[int, datetime | None]:
    """(how many flights are past their purge time with their key still present, the oldest due time)."""
    row = one(await conn.fetchrow(
        "SELECT count(*) AS n, min(f.scheduled_departure + make_interval(secs => $2)) AS oldest"
        " FROM flights f JOIN flight_keys k ON k.flight_id = f.id"
        " WHERE f.scheduled_departure + make_interval(secs => $2) < $1", now, grace_s))
    return row["n"], row["oldest"]
