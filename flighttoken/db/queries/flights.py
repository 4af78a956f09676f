from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from flighttoken.flights.model import Flight, FlightState

_COLUMNS = "id, airline, number, scheduled_departure, window_start, destination, international, state, gate"
Executor = asyncpg.Connection | asyncpg.Pool


def _flight(row: asyncpg.Record) -> Flight:
    return Flight(id=row["id"], airline=row["airline"], number=row["number"],
                  scheduled_departure=row["scheduled_departure"], window_start=row["window_start"],
                  destination=row["destination"], international=row["international"],
                  state=FlightState(row["state"]), gate=row["gate"])


async def insert(conn: Executor, flight: Flight) -> bool:
    """Insert; False when the same airline, number and departure already exist."""
    status = await conn.execute(
        f"INSERT INTO flights ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (airline, number, scheduled_departure) DO NOTHING",
        flight.id, flight.airline, flight.number, flight.scheduled_departure, flight.window_start,
        flight.destination, flight.international, flight.state.value, flight.gate,
    )
    return status.endswith(" 1")


async def by_id(conn: Executor, flight_id: uuid.UUID, *, for_update: bool = False) -> Flight | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM flights WHERE id = $1{lock}", flight_id)
    return _flight(row) if row else None


async def by_code(conn: Executor, airline: str, number: str, departure: datetime) -> Flight | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM flights WHERE airline = $1 AND number = $2 AND scheduled_departure = $3",
        airline, number, departure)
    return _flight(row) if row else None


async def list_between(conn: Executor, start: datetime, end: datetime, airline: str | None = None) -> list[Flight]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM flights WHERE scheduled_departure BETWEEN $1 AND $2"
        " AND ($3::text IS NULL OR airline = $3) ORDER BY scheduled_departure, airline, number",
        start, end, airline)
    return [_flight(r) for r in rows]


async def open_flights(conn: Executor) -> list[Flight]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM flights WHERE state IN ('scheduled', 'boarding')")
    return [_flight(r) for r in rows]


async def boarding_at_gate(conn: Executor, gate: str) -> list[Flight]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM flights WHERE state = 'boarding' AND gate = $1", gate)
    return [_flight(r) for r in rows]


async def set_state(conn: Executor, flight_id: uuid.UUID, state: FlightState) -> Flight:
    row = await conn.fetchrow(
        f"UPDATE flights SET state = $2, updated_at = now(),"
        f" closed_at = CASE WHEN $2 IN ('departed', 'cancelled') THEN now() ELSE closed_at END"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        flight_id, state.value)
    return _flight(row)


async def insert_key(conn: Executor, flight_id: uuid.UUID, kek_id: str, wrapped: bytes) -> None:
    await conn.execute("INSERT INTO flight_keys (flight_id, kek_id, wrapped) VALUES ($1, $2, $3)",
                       flight_id, kek_id, wrapped)


async def key_of(conn: Executor, flight_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT kek_id, wrapped FROM flight_keys WHERE flight_id = $1", flight_id)
