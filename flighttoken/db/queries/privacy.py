"""Purge (crypto-shredding) receipts, consent withdrawal at opt-out, and key rotation (ending tokens:
``tokens.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import cast

import asyncpg

from flighttoken.db.connection import Connection, Executor

_RECEIPT = ("id, flight_id, flight_code, scheduled_departure, trigger, initiated_by, started_at, key_id, kek_id,"
            " key_destroyed_at, templates_deleted, tokens_ended, tokens_total, consents_kept, completed_at")

# ---- purge ------------------------------------------------------------------------------------
# Every step takes many flights at once: a window's hundred flights cost one commit per step.


async def begin_purges(conn: Executor, triggers: dict[uuid.UUID, str], initiated_by: str) -> list[asyncpg.Record]:
    """The durable "purge started" markers (first trigger wins); the receipts of the flights that exist."""
    ids, names = list(triggers), list(triggers.values())
    await conn.execute(
        "INSERT INTO purge_receipts (flight_id, flight_code, scheduled_departure, trigger, initiated_by)"
        " SELECT f.id, f.airline || f.number, f.scheduled_departure, d.trigger, $3"
        " FROM flights f JOIN unnest($1::uuid[], $2::text[]) AS d(id, trigger) ON d.id = f.id"
        " ORDER BY f.id ON CONFLICT (flight_id) DO NOTHING",
        ids, names, initiated_by)
    return await conn.fetch(f"SELECT {_RECEIPT} FROM purge_receipts WHERE flight_id = ANY($1::uuid[])", ids)


async def lock_flights(conn: Connection, flight_ids: Sequence[uuid.UUID]) -> None:
    """Serialise with enrolments (their inserts hold a key-share lock on the flight row); in id order,
    so two purges of overlapping sets never deadlock."""
    await conn.execute("SELECT 1 FROM flights WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE", list(flight_ids))


async def delete_flight_keys(conn: Executor, flight_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """Delete the flights' key markers (the keys themselves are in the key store, destroyed first)."""
    return await conn.fetch("DELETE FROM flight_keys WHERE flight_id = ANY($1::uuid[]) RETURNING flight_id, key_id",
                            list(flight_ids))


async def record_keys_destroyed(conn: Executor, flight_ids: Sequence[uuid.UUID],
                                keys: Sequence[asyncpg.Record]) -> None:
    """Name each destroyed key on its receipt from the key store's tombstones (flight_id, key_id, kek_id,
    destroyed_at); a flight without one had no key to destroy."""
    await conn.execute(
        "UPDATE purge_receipts r SET key_id = coalesce(r.key_id, k.key_id), kek_id = coalesce(r.kek_id, k.kek_id),"
        " key_destroyed_at = coalesce(r.key_destroyed_at, k.destroyed_at, now())"
        " FROM unnest($1::uuid[]) AS f(id) LEFT JOIN unnest($2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[])"
        " AS k(flight_id, key_id, kek_id, destroyed_at) ON k.flight_id = f.id"
        " WHERE r.flight_id = f.id AND r.completed_at IS NULL",
        list(flight_ids), [k["flight_id"] for k in keys], [k["key_id"] for k in keys], [k["kek_id"] for k in keys],
        [k["destroyed_at"] for k in keys])


async def add_purge_counts(conn: Executor, templates: dict[uuid.UUID, int], tokens: dict[uuid.UUID, int]) -> None:
    ids = sorted(set(templates) | set(tokens))
    await conn.execute(
        "UPDATE purge_receipts r SET templates_deleted = templates_deleted + c.templates,"
        " tokens_ended = tokens_ended + c.tokens FROM unnest($1::uuid[], $2::int[], $3::int[])"
        " AS c(flight_id, templates, tokens) WHERE r.flight_id = c.flight_id AND r.completed_at IS NULL",
        ids, [templates.get(i, 0) for i in ids], [tokens.get(i, 0) for i in ids])


async def complete_purges(conn: Executor, flight_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """Close the receipts still open (those already closed, by an earlier run or another instance,
    are not returned) and mark their flights purged."""
    rows = await conn.fetch(
        "UPDATE purge_receipts r SET completed_at = now(),"
        " tokens_total = (SELECT count(*) FROM tokens t WHERE t.flight_id = r.flight_id),"
        " consents_kept = (SELECT count(*) FROM consents c WHERE c.flight_id = r.flight_id)"
        f" WHERE r.flight_id = ANY($1::uuid[]) AND r.completed_at IS NULL RETURNING {_RECEIPT}", list(flight_ids))
    await conn.execute("UPDATE flights SET purged_at = now() WHERE id = ANY($1::uuid[])",
                       [r["flight_id"] for r in rows])
    return rows


async def receipts_of(conn: Executor, flight_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {_RECEIPT} FROM purge_receipts WHERE flight_id = ANY($1::uuid[])",
                            list(flight_ids))


async def receipt(conn: Executor, flight_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_RECEIPT} FROM purge_receipts WHERE flight_id = $1", flight_id)


async def receipts(conn: Executor, *, since: datetime | None, until: datetime | None, after_id: int,
                   limit: int) -> list[asyncpg.Record]:
    """Completed receipts, oldest first, completed within [since, until)."""
    return await conn.fetch(
        f"SELECT {_RECEIPT} FROM purge_receipts WHERE completed_at IS NOT NULL AND id > $1"
        " AND ($2::timestamptz IS NULL OR completed_at >= $2) AND ($3::timestamptz IS NULL OR completed_at < $3)"
        " ORDER BY id LIMIT $4", after_id, since, until, limit)


async def unfinished_purges(conn: Executor, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT flight_id, trigger FROM purge_receipts WHERE completed_at IS NULL ORDER BY started_at LIMIT $1",
        limit)


async def flights_due(conn: Executor, grace_s: int, limit: int) -> list[asyncpg.Record]:
    """Flights whose data must go: closed, or still open past departure + grace; not yet purged."""
    return await conn.fetch(
        "SELECT id, state, scheduled_departure FROM flights WHERE purged_at IS NULL"
        " AND (state IN ('departed', 'cancelled') OR scheduled_departure < now() - make_interval(secs => $1))"
        " ORDER BY scheduled_departure LIMIT $2", float(grace_s), limit)


async def database_now(conn: Executor) -> datetime:
    return cast(datetime, await conn.fetchval("SELECT now()"))


# ---- opt-out ----------------------------------------------------------------------------------


async def withdraw_consents(conn: Executor, document_key: bytes, flight_ids: Sequence[uuid.UUID]) -> int:
    status = await conn.execute(
        "UPDATE consents SET withdrawn_at = now() WHERE document_key = $1 AND flight_id = ANY($2::uuid[])"
        " AND withdrawn_at IS NULL", document_key, list(flight_ids))
    return int(status.split()[-1])


# ---- data key markers (the wrapped keys live in the key store: flighttoken/db/keystore.py) ---------


async def insert_flight_key_marker(conn: Executor, flight_id: uuid.UUID, key_id: uuid.UUID) -> None:
    await conn.execute("INSERT INTO flight_keys (flight_id, key_id) VALUES ($1, $2) ON CONFLICT (flight_id) DO NOTHING",
                       flight_id, key_id)


async def has_legacy_wrapped_keys(conn: Executor) -> bool:
    """Does the service database still have the wrapped-key columns (before migration 0006)?"""
    return cast(bool, await conn.fetchval(
        "SELECT count(*) = 2 FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND column_name = 'wrapped' AND table_name IN ('flight_keys', 'watchlist_keys')"))


async def lock_legacy_keys(conn: Connection) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """Every wrapped key still in the service database, locked against new ones until commit."""
    await conn.execute("LOCK TABLE flight_keys, watchlist_keys IN EXCLUSIVE MODE")
    flights = await conn.fetch("SELECT flight_id, key_id, kek_id, wrapped FROM flight_keys ORDER BY flight_id")
    watchlist = await conn.fetch("SELECT id, kek_id, wrapped FROM watchlist_keys ORDER BY id")
    return flights, watchlist


async def declare_keys_moved(conn: Connection) -> None:
    """Tell migration 0006 (same transaction) that every wrapped key is safe in the key store."""
    await conn.execute("SET LOCAL flighttoken.keys_in_keystore = 'on'")
