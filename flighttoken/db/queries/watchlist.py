"""Watchlist SQL: keys, subjects, sealed templates and alerts (authority data; token holds: ``tokens.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from flighttoken.db.connection import Connection, Executor

# ---- keys -----------------------------------------------------------------------------------------


async def lock_keys(conn: Connection) -> None:
    """Serialise key creation (two first enrolments at once must not make two current keys)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('flighttoken.watchlist_keys'))")


async def current_key(conn: Executor) -> uuid.UUID | None:
    """The id of the newest watchlist data key (its wrapped key is in the key store)."""
    return await conn.fetchval("SELECT id FROM watchlist_keys ORDER BY created_at DESC, id LIMIT 1")


async def insert_key_marker(conn: Executor, key_id: uuid.UUID) -> None:
    await conn.execute("INSERT INTO watchlist_keys (id) VALUES ($1)", key_id)


# ---- subjects -------------------------------------------------------------------------------------

_SUBJECT = """
    SELECT s.id, s.case_reference, s.reason_code, s.added_by, s.created_at, s.expires_at, s.removed_at,
           s.removed_by, (SELECT count(*) FROM watchlist_templates t WHERE t.subject_id = s.id) AS templates
    FROM watchlist_subjects s"""


async def insert_subject(conn: Executor, *, subject_id: uuid.UUID, case_reference: str, reason_code: str,
                         added_by: str, device_id: uuid.UUID, expires_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO watchlist_subjects (id, case_reference, reason_code, added_by, added_by_device, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        subject_id, case_reference, reason_code, added_by, device_id, expires_at)


async def insert_template(conn: Executor, *, subject_id: uuid.UUID, n: int, key_id: uuid.UUID, model_id: str,
                          sealed: bytes, quality: float) -> None:
    await conn.execute(
        "INSERT INTO watchlist_templates (subject_id, n, key_id, model_id, sealed, quality)"
        " VALUES ($1, $2, $3, $4, $5, $6)", subject_id, n, key_id, model_id, sealed, quality)


async def subject(conn: Executor, subject_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_SUBJECT + " WHERE s.id = $1", subject_id)


async def subjects(conn: Executor, *, status: str, now: datetime, limit: int, offset: int) -> list[asyncpg.Record]:
    # Every branch names $1 (typed), so the statement always has the same parameters.
    where = {
        "active": "s.removed_at IS NULL AND s.expires_at > $1::timestamptz",
        "expired": "s.removed_at IS NULL AND s.expires_at <= $1::timestamptz",
        "removed": "s.removed_at IS NOT NULL AND $1::timestamptz IS NOT NULL",
        "all": "$1::timestamptz IS NOT NULL",
    }[status]
    return await conn.fetch(_SUBJECT + f" WHERE {where} ORDER BY s.created_at DESC, s.id LIMIT $2 OFFSET $3",
                            now, limit, offset)


async def mark_removed(conn: Executor, subject_id: uuid.UUID, removed_by: str) -> bool:
    """Remove a subject and delete its templates; False when unknown or already removed."""
    row = await conn.fetchrow(
        "UPDATE watchlist_subjects SET removed_at = now(), removed_by = $2, templates_deleted_at = now()"
        " WHERE id = $1 AND removed_at IS NULL RETURNING id", subject_id, removed_by)
    if row is None:
        return False
    await conn.execute("DELETE FROM watchlist_templates WHERE subject_id = $1", subject_id)
    return True


async def expire_due(conn: Executor, now: datetime) -> list[uuid.UUID]:
    """Delete the templates of every subject past its expiry; returns the subjects expired now."""
    rows = await conn.fetch(
        "UPDATE watchlist_subjects SET templates_deleted_at = $1"
        " WHERE expires_at <= $1 AND templates_deleted_at IS NULL RETURNING id", now)
    ids = [r["id"] for r in rows]
    if ids:
        await conn.execute("DELETE FROM watchlist_templates WHERE subject_id = ANY($1::uuid[])", ids)
    return ids


async def searchable_templates(conn: Executor, model_id: str, now: datetime,
                               subject_ids: Sequence[uuid.UUID] | None = None) -> list[asyncpg.Record]:
    """Templates of live subjects (not removed, not expired) made by the running model."""
    return await conn.fetch(
        "SELECT t.subject_id, t.n, t.key_id, t.sealed, s.expires_at"
        " FROM watchlist_templates t JOIN watchlist_subjects s ON s.id = t.subject_id"
        " WHERE s.removed_at IS NULL AND s.expires_at > $2 AND t.model_id = $1"
        " AND ($3::uuid[] IS NULL OR t.subject_id = ANY($3::uuid[]))",
        model_id, now, list(subject_ids) if subject_ids is not None else None)


async def searchable_subject_ids(conn: Executor, model_id: str, now: datetime) -> set[uuid.UUID]:
    """Ids only (no template bytes): what reconciliation compares with memory."""
    rows = await conn.fetch(
        "SELECT DISTINCT t.subject_id FROM watchlist_templates t JOIN watchlist_subjects s ON s.id = t.subject_id"
        " WHERE s.removed_at IS NULL AND s.expires_at > $2 AND t.model_id = $1", model_id, now)
    return {r["subject_id"] for r in rows}


# ---- alerts ---------------------------------------------------------------------------------------

_ALERT = """
    SELECT a.id, a.kind, a.at, a.subject_id, s.case_reference, s.reason_code, a.device_id, d.name AS device_name,
           a.touchpoint, a.terminal, a.gate, a.lounge_id, a.score, a.token_id, a.flight_id,
           f.airline || f.number AS flight, t.surname, t.given_names, a.status, a.resolved_at, a.resolved_by, a.note
    FROM alerts a
    LEFT JOIN watchlist_subjects s ON s.id = a.subject_id
    JOIN devices d ON d.id = a.device_id
    LEFT JOIN tokens t ON t.id = a.token_id
    LEFT JOIN flights f ON f.id = a.flight_id"""

# The kiosk's screening write (a touchpoint's is part of its decision, db/queries/journey.py): the
# alert, the hold on the new token and the audit event in one statement, so a referral can never be
# half recorded. Run for every screened enrolment: with $1 (the kind) NULL it writes nothing, so a
# referral costs the kiosk no extra round trip. The hold is taken only if the token still exists.
_RAISE = """
WITH tok AS (SELECT id, flight_id FROM tokens WHERE id = $9::uuid AND $1::text IS NOT NULL),
alert AS (
    INSERT INTO alerts (kind, subject_id, device_id, touchpoint, terminal, gate, lounge_id, score, token_id, flight_id)
    SELECT $1::text, $2::uuid, $3::uuid, $4::text, $5::text, $6::text, $7::text, $8::real,
           (SELECT id FROM tok), (SELECT flight_id FROM tok)
    WHERE $1::text IS NOT NULL
    RETURNING id, token_id),
hold AS (
    INSERT INTO token_holds (token_id, holder, alert_id, reason, placed_by)
    SELECT token_id, 'authority', id, 'officer_referral', 'watchlist' FROM alert WHERE token_id IS NOT NULL
    RETURNING token_id),
held AS (UPDATE tokens SET on_hold = true WHERE id IN (SELECT token_id FROM hold) RETURNING id),
audited AS (
    INSERT INTO authority_audit_events (actor, action, outcome, detail)
    SELECT $10, 'watchlist.alert', 'ok',
           jsonb_build_object('alert_id', id, 'kind', $1::text, 'subject_id', $2::uuid, 'held', token_id IS NOT NULL)
    FROM alert RETURNING id),
-- A sync event (flighttoken.sync.events wire format) so other instances stream the alert too.
notified AS (
    SELECT pg_notify($11, jsonb_build_object('kind', 'alert', 'origin', $12::text,
                                             'payload', jsonb_build_object('alert_id', id::text))::text)
    FROM alert)
SELECT (SELECT id FROM alert), (SELECT count(*) FROM held) h, (SELECT count(*) FROM audited) au,
       (SELECT count(*) FROM notified) n"""


async def raise_alert(conn: Executor, *, kind: str | None, subject_id: uuid.UUID | None, device_id: uuid.UUID,
                      touchpoint: str, terminal: str | None, gate: str | None, lounge_id: str | None,
                      score: float | None, token_id: uuid.UUID | None, actor: str, channel: str,
                      origin: str) -> int | None:
    """The new alert's id; None (nothing written) when ``kind`` is None."""
    return await conn.fetchval(_RAISE, kind, subject_id, device_id, touchpoint, terminal, gate, lounge_id, score,
                               token_id, actor, channel, origin)


async def alert(conn: Executor, alert_id: int, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE OF a" if for_update else ""
    return await conn.fetchrow(_ALERT + " WHERE a.id = $1" + lock, alert_id)


async def alerts(conn: Executor, *, status: str, limit: int, after: int) -> list[asyncpg.Record]:
    where = {"open": "a.status = 'open'", "resolved": "a.status <> 'open'", "all": "true"}[status]
    return await conn.fetch(_ALERT + f" WHERE {where} AND a.id > $2 ORDER BY a.id LIMIT $1", limit, after)


async def alerts_after(conn: Executor, after: int, limit: int = 1000) -> list[asyncpg.Record]:
    """Every alert with an id above ``after``, oldest first: what a reconnecting stream missed."""
    return await conn.fetch(_ALERT + " WHERE a.id > $1 ORDER BY a.id LIMIT $2", after, limit)


async def resolve(conn: Executor, alert_id: int, *, status: str, resolved_by: str, device_id: uuid.UUID,
                  note: str | None) -> None:
    await conn.execute(
        "UPDATE alerts SET status = $2, resolved_at = now(), resolved_by = $3, resolved_device = $4, note = $5"
        " WHERE id = $1", alert_id, status, resolved_by, device_id, note)
