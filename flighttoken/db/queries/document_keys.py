"""Document keys in the service database: migration 0010's one-time keying of the old unkeyed digests,
and the id of the document MAC key they are keyed with (``flighttoken/crypto/document_key.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import cast

import asyncpg

from flighttoken.db.connection import Connection, Executor

# The tables holding a document key, each keyed by its uuid ``id``. Only these names reach the SQL.
TABLES = ("tokens", "consents")


def _table(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"{table} holds no document key")
    return table


async def has_rows(conn: Executor) -> bool:
    return cast(bool, await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tokens) OR EXISTS (SELECT 1 FROM consents)"))


async def lock_tables(conn: Connection) -> None:
    """Inside the migration transaction: no other writer until it commits (or rolls back)."""
    await conn.execute("LOCK TABLE tokens, consents IN SHARE ROW EXCLUSIVE MODE")


async def digests_after(conn: Executor, table: str, after: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT id, document_key FROM {_table(table)} WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        after, limit)


async def replace(conn: Executor, table: str, rows: Sequence[tuple[uuid.UUID, bytes]]) -> int:
    if not rows:
        return 0
    ids, keys = (list(c) for c in zip(*rows, strict=True))
    status = await conn.execute(
        f"UPDATE {_table(table)} t SET document_key = n.key FROM unnest($1::uuid[], $2::bytea[]) AS n(id, key)"
        " WHERE t.id = n.id", ids, keys)
    return int(status.split()[-1])


async def declare_keyed(conn: Connection) -> None:
    """What 0010 checks before it applies (this transaction only)."""
    await conn.execute("SELECT set_config('flighttoken.document_keys_keyed', 'on', true)")


async def recorded_mac_key(conn: Executor) -> uuid.UUID | None:
    return await conn.fetchval("SELECT key_id FROM document_mac_key")


async def record_mac_key(conn: Executor, key_id: uuid.UUID) -> uuid.UUID:
    """Record ``key_id`` unless one is recorded already; the recorded id either way."""
    await conn.execute("INSERT INTO document_mac_key (key_id) VALUES ($1) ON CONFLICT DO NOTHING", key_id)
    return cast(uuid.UUID, await conn.fetchval("SELECT key_id FROM document_mac_key"))
