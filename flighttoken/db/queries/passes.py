"""Boarding-pass look-ups: the flight a pass's leg names, and the live tokens on it under the pass's PNR."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from flighttoken.db.connection import Executor
from flighttoken.db.queries.flights import _COLUMNS, _flight
from flighttoken.db.queries.tokens import _TOKEN_AND_FLIGHT, LIVE_STATES
from flighttoken.flights.model import Flight


async def flights_named(conn: Executor, airline: str, number: str, start: datetime, end: datetime) -> list[Flight]:
    """Flights of ``airline`` with ``number`` (leading zeros ignored) departing in [start, end)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM flights WHERE airline = $1 AND ltrim(number, '0') = ltrim($2, '0')"
        " AND scheduled_departure >= $3 AND scheduled_departure < $4 ORDER BY scheduled_departure",
        airline, number, start, end)
    return [_flight(r) for r in rows]


async def live_tokens_on_booking(conn: Executor, flight_id: uuid.UUID, booking_reference: str) -> list[asyncpg.Record]:
    """The flight's live tokens under this booking reference, with their flight (the touchpoint row)
    and names: a booking may hold several passengers; the caller picks by name."""
    return await conn.fetch(
        _TOKEN_AND_FLIGHT + " WHERE t.flight_id = $1 AND t.booking_reference = $2 AND t.state = ANY($3::text[])",
        flight_id, booking_reference, list(LIVE_STATES))
