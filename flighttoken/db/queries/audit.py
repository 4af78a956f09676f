from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from flighttoken.db.connection import Connection, Executor

# The authority's own trail (every ``watchlist.*`` action) has its own table and id sequence
# (migrations/0011): sharing audit_events' ids, an alert left a gap an admin could see in GET /v1/audit.
AUTHORITY_ACTION_PREFIX = "watchlist."
AUTHORITY_TABLE = "authority_audit_events"


def table_for(action: str) -> str:
    return AUTHORITY_TABLE if action.startswith(AUTHORITY_ACTION_PREFIX) else "audit_events"


async def record(conn: Executor, *, actor: str, action: str, outcome: str,
                 flight_id: uuid.UUID | None = None, token_id: uuid.UUID | None = None,
                 detail: dict[str, Any] | None = None) -> None:
    """Append one audit event (``watchlist.*`` actions to the authority's table). Never pass an image,
    a template or a key in ``detail``."""
    await conn.execute(
        f"INSERT INTO {table_for(action)} (actor, action, outcome, flight_id, token_id, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        actor, action, outcome, flight_id, token_id, msgspec.json.encode(detail or {}).decode())


# ---- audit queries and retention (privacy) ------------------------------------------------------

_DEVICE_COLUMNS = "d.id AS device_id, d.name AS device_name, d.kind AS device_kind, d.terminal, d.gate, d.lounge_id"
PUBLIC_EVENT_TABLES = ("audit_events", "journey_events")
EVENT_TABLES = (*PUBLIC_EVENT_TABLES, AUTHORITY_TABLE)


async def list_events(conn: Executor, *, flight_id: uuid.UUID | None,
                      device_id: uuid.UUID | None, since: datetime | None, until: datetime | None,
                      action: str | None, outcome: str | None, after_id: int, limit: int) -> list[asyncpg.Record]:
    """Audit events in id order; ``action`` ending in ``*`` matches a prefix. Actor's device joined in."""
    prefix = action[:-1] if action and action.endswith("*") else None
    return await conn.fetch(
        f"SELECT a.id, a.at, a.actor, a.action, a.outcome, a.flight_id, a.token_id, a.detail::text AS detail,"
        f" {_DEVICE_COLUMNS} FROM audit_events a LEFT JOIN devices d ON a.actor = 'device:' || d.id::text"
        " WHERE a.id > $1 AND ($2::uuid IS NULL OR a.flight_id = $2)"
        " AND ($3::uuid IS NULL OR a.actor = 'device:' || $3::text)"
        " AND ($4::timestamptz IS NULL OR a.at >= $4) AND ($5::timestamptz IS NULL OR a.at < $5)"
        " AND ($6::text IS NULL OR a.action = $6) AND ($7::text IS NULL OR starts_with(a.action, $7))"
        " AND ($8::text IS NULL OR a.outcome = $8)"
        # Defence in depth: the authority's trail lives in its own table (see AUTHORITY_TABLE).
        " AND NOT starts_with(a.action, 'watchlist.')"
        " ORDER BY a.id LIMIT $9",
        after_id, flight_id, device_id, since, until, None if prefix is not None else action, prefix, outcome, limit)


async def list_decisions(conn: Executor, *, flight_id: uuid.UUID | None,
                         device_id: uuid.UUID | None, since: datetime | None, until: datetime | None,
                         decision: str | None, reason: str | None, after_id: int, limit: int) -> list[asyncpg.Record]:
    """Touchpoint decisions (journey events) in id order, with the device that made them."""
    return await conn.fetch(
        "SELECT j.id, j.at, j.touchpoint, j.flight_id, j.token_id, j.decision, j.reason, j.score, j.margin,"
        f" j.latency_ms, j.method, j.bags, {_DEVICE_COLUMNS}"
        " FROM journey_events j LEFT JOIN devices d ON d.id = j.device_id"
        " WHERE j.id > $1 AND ($2::uuid IS NULL OR j.flight_id = $2) AND ($3::uuid IS NULL OR j.device_id = $3)"
        " AND ($4::timestamptz IS NULL OR j.at >= $4) AND ($5::timestamptz IS NULL OR j.at < $5)"
        " AND ($6::text IS NULL OR j.decision = $6) AND ($7::text IS NULL OR j.reason = $7)"
        " ORDER BY j.id LIMIT $8",
        after_id, flight_id, device_id, since, until, decision, reason, limit)


async def delete_older_than(conn: Connection, table: str, cutoff: datetime, batch: int) -> int:
    """Retention: delete up to ``batch`` events older than ``cutoff`` in one transaction.

    The append-only trigger lets these rows go only because this transaction declares the purge
    and its cutoff (migrations/0003_privacy.sql); any other DELETE is refused.
    """
    if table not in EVENT_TABLES:
        raise ValueError(f"{table} is not an event table")
    async with conn.transaction():
        await conn.execute("SELECT set_config('flighttoken.retention_purge', 'on', true),"
                           " set_config('flighttoken.retention_cutoff', $1, true)", cutoff.isoformat())
        status = await conn.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE at < $1 ORDER BY id LIMIT $2)",
            cutoff, batch)
    return int(status.split()[-1])
