from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from flighttoken.db.connection import Executor, one
from flighttoken.flights.model import Flight, FlightState

_INSERT_COLUMNS = ("id, airline, number, scheduled_departure, window_start, destination, international, state, gate,"
                   " booked")
_COLUMNS = _INSERT_COLUMNS + ", boarding_closed_at"


def _flight(row: asyncpg.Record) -> Flight:
    return Flight(id=row["id"], airline=row["airline"], number=row["number"],
                  scheduled_departure=row["scheduled_departure"], window_start=row["window_start"],
                  destination=row["destination"], international=row["international"],
                  state=FlightState(row["state"]), gate=row["gate"], booked=row["booked"],
                  boarding_closed_at=row["boarding_closed_at"])


async def insert(conn: Executor, flight: Flight) -> bool:
    """Insert; False when the same airline, number and departure already exist."""
    status = await conn.execute(
        f"INSERT INTO flights ({_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (airline, number, scheduled_departure) DO NOTHING",
        flight.id, flight.airline, flight.number, flight.scheduled_departure, flight.window_start,
        flight.destination, flight.international, flight.state.value, flight.gate, flight.booked,
    )
    return status.endswith(" 1")


async def by_id(conn: Executor, flight_id: uuid.UUID, *, for_update: bool = False) -> Flight | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM flights WHERE id = $1{lock}", flight_id)
    return _flight(row) if row else None


async def list_between(conn: Executor, start: datetime, end: datetime, airline: str | None = None) -> list[Flight]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM flights WHERE scheduled_departure BETWEEN $1 AND $2"
        " AND ($3::text IS NULL OR airline = $3) ORDER BY scheduled_departure, airline, number",
        start, end, airline)
    return [_flight(r) for r in rows]


async def boarding_at_gate(conn: Executor, gate: str) -> list[Flight]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM flights WHERE state = 'boarding' AND gate = $1", gate)
    return [_flight(r) for r in rows]


async def set_state(conn: Executor, flight_id: uuid.UUID, state: FlightState) -> Flight:
    row = await conn.fetchrow(
        f"UPDATE flights SET state = $2, updated_at = now(),"
        f" closed_at = CASE WHEN $2 IN ('departed', 'cancelled') THEN now() ELSE closed_at END,"
        f" boarding_closed_at = CASE WHEN $2 = 'closed' THEN now() ELSE boarding_closed_at END"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        flight_id, state.value)
    return _flight(one(row))


async def set_departure(conn: Executor, flight_id: uuid.UUID, departure: datetime,
                        window: datetime) -> Flight | None:
    """Move a flight's departure; None when another flight already has that number and time."""
    try:
        row = await conn.fetchrow(
            f"UPDATE flights SET scheduled_departure = $2, window_start = $3, updated_at = now()"
            f" WHERE id = $1 RETURNING {_COLUMNS}", flight_id, departure, window)
    except asyncpg.UniqueViolationError:
        return None
    return _flight(one(row))


async def set_gate(conn: Executor, flight_id: uuid.UUID, gate: str) -> Flight:
    row = await conn.fetchrow(
        f"UPDATE flights SET gate = $2, updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}", flight_id, gate)
    return _flight(one(row))


async def existing_codes(conn: Executor, keys: list[tuple[str, str, datetime]]) -> set[tuple[str, str, datetime]]:
    """Which of these (airline, number, departure) already exist."""
    if not keys:
        return set()
    rows = await conn.fetch(
        "SELECT f.airline, f.number, f.scheduled_departure FROM flights f"
        " JOIN unnest($1::text[], $2::text[], $3::timestamptz[]) AS k(airline, number, departure)"
        " ON f.airline = k.airline AND f.number = k.number AND f.scheduled_departure = k.departure",
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])
    return {(r["airline"], r["number"], r["scheduled_departure"]) for r in rows}


async def named_departing(conn: Executor, airline: str, number: str, start: datetime, end: datetime) -> list[Flight]:
    """Flights of ``airline`` with ``number`` (leading zeros ignored) departing in [start, end): what a
    boarding pass's leg names."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM flights WHERE airline = $1 AND ltrim(number, '0') = ltrim($2, '0')"
        " AND scheduled_departure >= $3 AND scheduled_departure < $4 ORDER BY scheduled_departure",
        airline, number, start, end)
    return [_flight(r) for r in rows]
