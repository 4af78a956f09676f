"""The touchpoint decision write: one statement per identify.

A decision is one round trip, atomic on its own (no BEGIN/COMMIT, nothing for the pool to roll
back): the token's move or lounge entry time (only from the state the decision read, never while
on hold, so a concurrent decision, hold or revoke makes this one ``state_changed``), the audit row
for a refusal that is evidence of misuse, and the journey event carrying the final reason.
"""

from __future__ import annotations

import uuid

import asyncpg

Executor = asyncpg.Connection | asyncpg.Pool

# Data-modifying CTEs all run to completion whether or not the main query reads them. ``moved`` is
# empty when the token was not to move (or be stamped), or its state or hold changed since it was
# read: a write that did not happen turns the decision into ``state_changed`` (not audited, no token
# on the event). $5 is the new state (NULL: stay), $7 the state the decision read.
_RECORD_DECISION = """
WITH moved AS (
    UPDATE tokens SET
        state = coalesce($5::text, state),
        cleared_at = CASE WHEN $5::text = 'immigration_cleared' THEN now() ELSE cleared_at END,
        boarded_at = CASE WHEN $5::text = 'boarded' THEN now() ELSE boarded_at END,
        last_lounge_at = CASE WHEN $6::boolean THEN now() ELSE last_lounge_at END
    WHERE id = $4::uuid
      AND state = $7::text AND NOT on_hold AND ($5::text IS NOT NULL OR $6::boolean)
    RETURNING id
), outcome AS (
    SELECT CASE WHEN $7::text IS NOT NULL AND NOT EXISTS (SELECT FROM moved) THEN 'state_changed'
                ELSE $8::text END AS reason
), audited AS (
    INSERT INTO audit_events (actor, action, outcome, flight_id, token_id, detail)
    SELECT 'device:' || $1::uuid, $2::text || '.identify', 'refused', $3::uuid, $4::uuid,
           jsonb_build_object('reason', $8::text)
    WHERE $9::boolean
)
INSERT INTO journey_events (device_id, touchpoint, flight_id, token_id, decision, reason, score, margin, latency_ms)
SELECT $1::uuid, $2::text, $3::uuid,
       CASE WHEN o.reason = 'matched' OR $9::boolean THEN $4::uuid END,
       CASE WHEN o.reason = 'matched' THEN 'proceed' ELSE 'refer' END,
       o.reason, $10::real, $11::real, $12::real
FROM outcome o
RETURNING id, reason"""


async def record_decision(conn: Executor, *, device_id: uuid.UUID, touchpoint: str, flight_id: uuid.UUID | None,
                          token_id: uuid.UUID | None, reason: str, transition: tuple[str, str] | None,
                          lounge_entry: bool, audit_refusal: bool, score: float | None, margin: float | None,
                          latency_ms: float) -> tuple[int, str]:
    """Write one decision; returns (journey event id, final reason). ``reason`` is the decision
    before the write: ``matched`` proceeds unless ``transition`` (expected state, new state; the
    same state twice for a lounge entry) no longer applies. ``audit_refusal`` adds the audit row
    (and keeps the token on the event)."""
    if lounge_entry and transition is None:
        raise ValueError("a lounge entry carries the state it was decided on")
    expected, new_state = transition if transition else (None, None)
    if new_state == expected:
        new_state = None  # a lounge entry: the token stays where it is
    row = await conn.fetchrow(_RECORD_DECISION, device_id, touchpoint, flight_id, token_id, new_state,
                              lounge_entry, expected, reason, audit_refusal, score, margin, latency_ms)
    return row["id"], row["reason"]
