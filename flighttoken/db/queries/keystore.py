"""Key store SQL (the key store's own database, see ``flighttoken/db/keystore.py``): wrapped data keys
of flights and of the watchlist, the document MAC key, the shredding of flight keys, master key rotation."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import cast

import asyncpg

from flighttoken.db.connection import Connection, Executor

# ---- flight keys --------------------------------------------------------------------------------


async def insert_flight_key(conn: Executor, flight_id: uuid.UUID, key_id: uuid.UUID, kek_id: str,
                            wrapped: bytes) -> uuid.UUID:
    """Store a flight's key unless it has one already; the key id that is stored either way."""
    row = await conn.fetchrow(
        "INSERT INTO flight_data_keys (flight_id, key_id, kek_id, wrapped) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (flight_id) DO NOTHING RETURNING key_id", flight_id, key_id, kek_id, wrapped)
    if row is not None:
        return row["key_id"]
    return cast(uuid.UUID, await conn.fetchval("SELECT key_id FROM flight_data_keys WHERE flight_id = $1", flight_id))


async def flight_key(conn: Executor, flight_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT key_id, kek_id, wrapped FROM flight_data_keys WHERE flight_id = $1", flight_id)


async def is_destroyed(conn: Executor, flight_id: uuid.UUID) -> bool:
    return cast(bool, await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM destroyed_flight_keys WHERE flight_id = $1)", flight_id))


async def destroy_flight_keys(conn: Connection, flight_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """Delete the keys and leave their tombstones (one transaction; call inside one). Returns the
    tombstones of all these flights, those of earlier runs included: (flight_id, key_id, kek_id, destroyed_at)."""
    ids = sorted(set(flight_ids))
    await conn.execute(
        "WITH d AS (DELETE FROM flight_data_keys WHERE flight_id = ANY($1::uuid[]) RETURNING flight_id, key_id, kek_id)"
        " INSERT INTO destroyed_flight_keys (flight_id, key_id, kek_id) SELECT flight_id, key_id, kek_id FROM d"
        " ON CONFLICT (flight_id) DO NOTHING", ids)
    return await conn.fetch("SELECT flight_id, key_id, kek_id, destroyed_at FROM destroyed_flight_keys"
                            " WHERE flight_id = ANY($1::uuid[])", ids)


# ---- watchlist keys -----------------------------------------------------------------------------


async def insert_watchlist_key(conn: Executor, key_id: uuid.UUID, kek_id: str, wrapped: bytes) -> None:
    await conn.execute("INSERT INTO watchlist_data_keys (id, kek_id, wrapped) VALUES ($1, $2, $3)"
                       " ON CONFLICT (id) DO NOTHING", key_id, kek_id, wrapped)


async def watchlist_key(conn: Executor, key_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, kek_id, wrapped FROM watchlist_data_keys WHERE id = $1", key_id)


# ---- the document MAC key ------------------------------------------------------------------------


async def insert_document_mac_key(conn: Executor, key_id: uuid.UUID, kek_id: str, wrapped: bytes) -> None:
    """Store the deployment's document MAC key unless it has one already (the first instance wins)."""
    await conn.execute("INSERT INTO document_mac_keys (id, kek_id, wrapped) VALUES ($1, $2, $3)"
                       " ON CONFLICT DO NOTHING", key_id, kek_id, wrapped)


async def document_mac_key(conn: Executor) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, kek_id, wrapped FROM document_mac_keys")


# ---- keys moved from the service database (migration 0006) --------------------------------------


async def adopt_flight_keys(conn: Executor, rows: Sequence[tuple[uuid.UUID, uuid.UUID, str, bytes]]) -> int:
    """(flight_id, key_id, kek_id, wrapped) copied as they are; rows already here are kept. Returns
    how many of ``rows`` now match a stored row exactly."""
    if not rows:
        return 0
    flights, key_ids, keks, wrapped = (list(c) for c in zip(*rows, strict=True))
    await conn.execute(
        "INSERT INTO flight_data_keys (flight_id, key_id, kek_id, wrapped)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[]) ON CONFLICT (flight_id) DO NOTHING",
        flights, key_ids, keks, wrapped)
    return cast(int, await conn.fetchval(
        "SELECT count(*) FROM flight_data_keys k JOIN unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[])"
        " AS n(flight_id, key_id, kek_id, wrapped) ON k.flight_id = n.flight_id AND k.key_id = n.key_id"
        " AND k.kek_id = n.kek_id AND k.wrapped = n.wrapped", flights, key_ids, keks, wrapped))


async def adopt_watchlist_keys(conn: Executor, rows: Sequence[tuple[uuid.UUID, str, bytes]]) -> int:
    """(id, kek_id, wrapped), as :func:`adopt_flight_keys`."""
    if not rows:
        return 0
    ids, keks, wrapped = (list(c) for c in zip(*rows, strict=True))
    await conn.execute(
        "INSERT INTO watchlist_data_keys (id, kek_id, wrapped)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[]) ON CONFLICT (id) DO NOTHING", ids, keks, wrapped)
    return cast(int, await conn.fetchval(
        "SELECT count(*) FROM watchlist_data_keys k JOIN unnest($1::uuid[], $2::text[], $3::bytea[])"
        " AS n(id, kek_id, wrapped) ON k.id = n.id AND k.kek_id = n.kek_id AND k.wrapped = n.wrapped",
        ids, keks, wrapped))


# ---- master key rotation ------------------------------------------------------------------------

# Tables of wrapped data keys, and their id column. Only these names ever reach the SQL below.
KEY_TABLES = {"flight_data_keys": "flight_id", "watchlist_data_keys": "id", "document_mac_keys": "id"}


def _key_table(table: str) -> str:
    if table not in KEY_TABLES:
        raise ValueError(f"{table} is not a data key table")
    return KEY_TABLES[table]


async def keys_to_rewrap(conn: Executor, table: str, current_kek: str, after: uuid.UUID | None,
                         limit: int) -> list[asyncpg.Record]:
    """Keys not wrapped under the current master key, in id order after ``after``."""
    id_col = _key_table(table)
    return await conn.fetch(
        f"SELECT {id_col} AS owner_id, kek_id, wrapped FROM {table} WHERE kek_id <> $1"
        f" AND ($2::uuid IS NULL OR {id_col} > $2) ORDER BY {id_col} LIMIT $3", current_kek, after, limit)


async def replace_wrapped(conn: Executor, table: str, rows: Sequence[tuple[uuid.UUID, str, bytes, str, bytes]]) -> int:
    """(owner, old kek, old wrapped, new kek, new wrapped): swap only rows unchanged since read."""
    id_col = _key_table(table)
    if not rows:
        return 0
    owners, old_keks, old_wrapped, new_keks, new_wrapped = (list(c) for c in zip(*rows, strict=True))
    status = await conn.execute(
        f"UPDATE {table} k SET kek_id = n.new_kek, wrapped = n.new_wrapped"
        " FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[], $5::bytea[])"
        " AS n(owner_id, old_kek, old_wrapped, new_kek, new_wrapped)"
        f" WHERE k.{id_col} = n.owner_id AND k.kek_id = n.old_kek AND k.wrapped = n.old_wrapped",
        owners, old_keks, old_wrapped, new_keks, new_wrapped)
    return int(status.split()[-1])


async def keys_by_kek(conn: Executor, table: str) -> dict[str, int]:
    _key_table(table)
    rows = await conn.fetch(f"SELECT kek_id, count(*) AS n FROM {table} GROUP BY kek_id ORDER BY kek_id")
    return {r["kek_id"]: r["n"] for r in rows}
