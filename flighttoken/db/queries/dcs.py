"""DCS messages: airlines' webhooks and the outbox their events are delivered from.

Every insert into the outbox is a no-op for an airline without a webhook, so callers enqueue
unconditionally inside their own transaction. The biometric boarding's insert is a CTE of the
decision statement itself (db/queries/journey.py).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from flighttoken.db.connection import Executor, one

# ---- webhooks ---------------------------------------------------------------------------------------


async def upsert_webhook(conn: Executor, airline: str, url: str, kek_id: str | None,
                         wrapped: bytes | None) -> asyncpg.Record:
    """Set the URL, and the secret when given (a new webhook always brings one). The caller holds
    :func:`lock_airline`, so "is there one already" cannot change under it."""
    returning = " RETURNING airline, url, created_at, updated_at"
    if kek_id is None or wrapped is None:
        return one(await conn.fetchrow("UPDATE dcs_webhooks SET url = $2, updated_at = now() WHERE airline = $1"
                                       + returning, airline, url))
    return one(await conn.fetchrow(
        "INSERT INTO dcs_webhooks (airline, url, secret_kek_id, secret_wrapped) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (airline) DO UPDATE SET url = EXCLUDED.url, updated_at = now(),"
        "   secret_kek_id = EXCLUDED.secret_kek_id, secret_wrapped = EXCLUDED.secret_wrapped" + returning,
        airline, url, kek_id, wrapped))


async def lock_airline(conn: Executor, airline: str) -> None:
    """Serialise webhook changes of one airline until the transaction ends (the row may not exist yet)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('dcs_webhook:' || $1))", airline)


async def webhook(conn: Executor, airline: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT airline, url, created_at, updated_at FROM dcs_webhooks WHERE airline = $1",
                               airline)


async def secrets_to_rewrap(conn: Executor, current_kek: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT airline, secret_kek_id, secret_wrapped FROM dcs_webhooks"
                            " WHERE secret_kek_id <> $1", current_kek)


async def replace_secret(conn: Executor, airline: str, old_wrapped: bytes, kek_id: str, wrapped: bytes) -> bool:
    """Swap the wrapping of the same secret, only if it is unchanged since read (no rotate-secret raced)."""
    return await conn.fetchval(
        "UPDATE dcs_webhooks SET secret_kek_id = $3, secret_wrapped = $4 WHERE airline = $1 AND secret_wrapped = $2"
        " RETURNING true", airline, old_wrapped, kek_id, wrapped) is not None


async def delete_webhook(conn: Executor, airline: str) -> bool:
    return await conn.fetchval("DELETE FROM dcs_webhooks WHERE airline = $1 RETURNING true", airline) is not None


# ---- enqueueing -------------------------------------------------------------------------------------


async def enqueue(conn: Executor, airline: str, kind: str, payload_json: str) -> uuid.UUID | None:
    """The new event's id, or None when the airline has no webhook."""
    return await conn.fetchval(
        "INSERT INTO dcs_outbox (airline, kind, payload) SELECT airline, $2, $3::jsonb FROM dcs_webhooks"
        " WHERE airline = $1 RETURNING id", airline, kind, payload_json)


# The passenger part every per-token event carries: no biometric data, no document number.
_TOKEN_PAYLOAD = """jsonb_build_object(
    'token_id', t.id, 'flight_id', f.id, 'flight', f.airline || f.number,
    'scheduled_departure', f.scheduled_departure, 'booking_reference', t.booking_reference, 'seat', t.seat)"""


async def enqueue_for_tokens(conn: Executor, token_ids: list[uuid.UUID], kind: str,
                             extra_json: str) -> list[uuid.UUID]:
    """One event per token whose airline has a webhook: the token's part plus ``extra_json``
    (merged, e.g. the reason and the time), with the token's state as read in this transaction."""
    rows = await conn.fetch(
        "INSERT INTO dcs_outbox (airline, kind, payload)"
        f" SELECT f.airline, $2, {_TOKEN_PAYLOAD} || jsonb_build_object('state', t.state) || $3::jsonb"
        " FROM tokens t JOIN flights f ON f.id = t.flight_id JOIN dcs_webhooks w ON w.airline = f.airline"
        " WHERE t.id = ANY($1::uuid[]) ORDER BY t.id RETURNING id", token_ids, kind, extra_json)
    return [r["id"] for r in rows]


async def enqueue_boarding_closed(conn: Executor, flight_id: uuid.UUID, state: str) -> uuid.UUID | None:
    """``boarding.closed``: the flight, how many boarded, and every live token that did not board."""
    return await conn.fetchval("""
        INSERT INTO dcs_outbox (airline, kind, payload)
        SELECT f.airline, 'boarding.closed', jsonb_build_object(
            'flight_id', f.id, 'flight', f.airline || f.number, 'scheduled_departure', f.scheduled_departure,
            'gate', f.gate, 'flight_state', $2::text, 'closed_at', now(),
            'boarded', (SELECT count(*) FROM tokens t WHERE t.flight_id = f.id AND t.state = 'boarded'),
            'not_boarded', coalesce((
                SELECT jsonb_agg(jsonb_build_object('token_id', t.id, 'booking_reference', t.booking_reference,
                                                    'seat', t.seat, 'state', t.state)
                                 ORDER BY t.booking_reference, t.id)
                FROM tokens t WHERE t.flight_id = f.id AND t.state IN ('enrolled', 'immigration_cleared')), '[]'))
        FROM flights f JOIN dcs_webhooks w ON w.airline = f.airline WHERE f.id = $1
        RETURNING id""", flight_id, state)


# ---- delivery ---------------------------------------------------------------------------------------

async def claim(conn: Executor, limit: int, lease: timedelta, claim_id: uuid.UUID) -> list[asyncpg.Record]:
    """Claim up to ``limit`` due events for ``lease``: pending, due, and not under another live lease.
    SKIP LOCKED: instances claiming at once take different rows. The attempt is counted at the
    claim, so an event whose deliverer keeps dying still reaches the dead letters."""
    return await conn.fetch("""
        WITH due AS (
            SELECT id FROM dcs_outbox
            WHERE status = 'pending' AND next_attempt_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
        UPDATE dcs_outbox o SET claimed_until = now() + $2::interval, claim = $3, attempts = o.attempts + 1
        FROM due WHERE o.id = due.id
        RETURNING o.id, o.airline, o.kind, o.payload::text AS payload, o.created_at, o.attempts""",
                            limit, lease, claim_id)


async def webhook_secret(conn: Executor, airline: str) -> asyncpg.Record | None:
    """The URL and the wrapped secret, for the deliverer only."""
    return await conn.fetchrow("SELECT url, secret_kek_id, secret_wrapped FROM dcs_webhooks WHERE airline = $1",
                               airline)


async def delivered(conn: Executor, event_id: uuid.UUID, claim_id: uuid.UUID) -> bool:
    """Mark delivered, if this deliverer still holds the claim (else another one owns it now)."""
    return await conn.fetchval(
        "UPDATE dcs_outbox SET status = 'delivered', delivered_at = now(), claimed_until = NULL, claim = NULL,"
        " last_error = NULL WHERE id = $1 AND claim = $2 AND status = 'pending' RETURNING true",
        event_id, claim_id) is not None


async def failed(conn: Executor, event_id: uuid.UUID, claim_id: uuid.UUID, error: str, retry_in: timedelta,
                 max_attempts: int) -> str | None:
    """Record a failed attempt: retry after ``retry_in``, or dead once ``max_attempts`` are spent.
    Returns the new status (None if the claim was lost)."""
    return await conn.fetchval(
        "UPDATE dcs_outbox SET last_error = left($3, 500), claimed_until = NULL, claim = NULL,"
        "   status = CASE WHEN attempts >= $5 THEN 'dead' ELSE 'pending' END,"
        "   dead_at = CASE WHEN attempts >= $5 THEN now() END,"
        "   next_attempt_at = now() + $4::interval"
        " WHERE id = $1 AND claim = $2 AND status = 'pending' RETURNING status",
        event_id, claim_id, error, retry_in, max_attempts)


async def forget_delivered(conn: Executor, older_than: timedelta) -> int:
    """Drop delivered events past retention (they carry booking references and seats)."""
    return int((await conn.execute(
        "DELETE FROM dcs_outbox WHERE status = 'delivered' AND delivered_at < now() - $1::interval",
        older_than)).split()[-1])


# ---- dead letters and metrics ---------------------------------------------------------------------

async def dead_letters(conn: Executor, airline: str | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, airline, kind, payload::text AS payload, created_at, attempts, last_error, dead_at"
        " FROM dcs_outbox WHERE status = 'dead' AND ($1::text IS NULL OR airline = $1)"
        " ORDER BY dead_at DESC, id LIMIT $2", airline, limit)


async def redrive(conn: Executor, event_id: uuid.UUID, airline: str | None) -> bool:
    """A dead event is pending again with a fresh set of attempts (same id: receivers dedupe)."""
    return await conn.fetchval(
        "UPDATE dcs_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), dead_at = NULL"
        " WHERE id = $1 AND status = 'dead' AND ($2::text IS NULL OR airline = $2) RETURNING true",
        event_id, airline) is not None


async def counts(conn: Executor) -> dict[str, int]:
    """Events waiting (pending) and dead-lettered, for /metrics."""
    rows = await conn.fetch("SELECT status, count(*) AS n FROM dcs_outbox WHERE status <> 'delivered' GROUP BY status")
    return {"pending": 0, "dead": 0, **{r["status"]: r["n"] for r in rows}}
