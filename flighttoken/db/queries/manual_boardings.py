"""Manual boarding SQL (journey/manual.py): a gate agent boards a passenger by hand.

The write is one statement, atomic on its own: the token moves to ``boarded`` only from the state
the caller read, never while on hold, and only while its flight is still boarding at the agent's
gate; the ``manual_boardings`` row and the audit event are written only if it moved. An empty
answer means the token or its flight changed since it was read (``state_changed``): nothing written.
The answer carries what the DCS's ``passenger.boarded`` event reports, as committed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from flighttoken.db.connection import Executor

_BOARD = """
WITH moved AS (
    UPDATE tokens t SET state = 'boarded', boarded_at = now()
    FROM flights f
    WHERE t.id = $1::uuid AND f.id = t.flight_id
      AND t.state = $2::text AND t.state IN ('enrolled', 'immigration_cleared') AND NOT t.on_hold
      AND f.state = 'boarding' AND f.gate = $3::text
    RETURNING t.id, t.flight_id, t.boarded_at, t.booking_reference, t.seat,
              f.airline, f.number, f.scheduled_departure
), recorded AS (
    INSERT INTO manual_boardings (at, token_id, flight_id, device_id, agent_id, reason_code)
    SELECT boarded_at, id, flight_id, $4::uuid, $5::text, $6::text FROM moved
    RETURNING id, at, flight_id
), audited AS (
    INSERT INTO audit_events (actor, action, outcome, flight_id, token_id, detail)
    SELECT 'device:' || $4::uuid, 'token.boarded_manually', 'ok', flight_id, id,
           jsonb_build_object('agent_id', $5::text, 'reason_code', $6::text, 'from_state', $2::text,
                              'manual_boarding_id', (SELECT id FROM recorded))
    FROM moved
)
SELECT r.id, r.at, r.flight_id, m.booking_reference, m.seat, m.airline, m.number, m.scheduled_departure
FROM recorded r CROSS JOIN moved m"""


@dataclass(frozen=True, slots=True)
class ManualBoardingRow:
    id: int
    at: datetime
    flight_id: uuid.UUID
    booking_reference: str
    seat: str | None
    airline: str
    number: str
    scheduled_departure: datetime


async def board(conn: Executor, *, token_id: uuid.UUID, expected_state: str, gate: str, device_id: uuid.UUID,
                agent_id: str, reason_code: str) -> ManualBoardingRow | None:
    """Board ``token_id`` by hand (see the module docstring); None when nothing moved."""
    row = await conn.fetchrow(_BOARD, token_id, expected_state, gate, device_id, agent_id, reason_code)
    return None if row is None else ManualBoardingRow(**dict(row))


async def of_token(conn: Executor, token_id: uuid.UUID) -> asyncpg.Record | None:
    """The token's manual boarding, if it was boarded by hand."""
    return await conn.fetchrow(
        "SELECT id, at, token_id, flight_id, device_id, agent_id, reason_code FROM manual_boardings"
        " WHERE token_id = $1", token_id)
