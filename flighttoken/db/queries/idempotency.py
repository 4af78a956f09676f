"""Idempotency keys: claim one atomically, record its answer, release it, expire old ones."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from flighttoken.db.connection import Executor

# One statement, atomic across instances: a new key (or one expired, or whose claim was abandoned
# by a dead instance) is claimed by this request; otherwise the row already there is returned.
# No row at all means a concurrent claim committed after this statement's snapshot: ask again.
_CLAIM = """
WITH claimed AS (
    INSERT INTO idempotency_keys AS k (device_id, key, operation, body_mac, body_kek_id, claim)
    VALUES ($1, $2, $3, $4, $8, $5)
    ON CONFLICT (device_id, key) DO UPDATE
        SET operation = excluded.operation, body_mac = excluded.body_mac, body_kek_id = excluded.body_kek_id,
            claim = excluded.claim, status = NULL, response = NULL, created_at = now(), completed_at = NULL
        WHERE k.created_at <= now() - $6::interval
           OR (k.status IS NULL AND k.created_at <= now() - $7::interval)
    RETURNING operation, body_mac, body_kek_id, claim, status, response
)
SELECT operation, body_mac, body_kek_id, claim, status, response FROM claimed
UNION ALL
SELECT operation, body_mac, body_kek_id, claim, status, response FROM idempotency_keys
WHERE device_id = $1 AND key = $2 AND NOT EXISTS (SELECT FROM claimed)"""


async def claim(conn: Executor, *, device_id: uuid.UUID, key: str, operation: str, body_mac: bytes,
                body_kek_id: str, claim_id: uuid.UUID, ttl: timedelta, lease: timedelta) -> asyncpg.Record | None:
    """The key's row after trying to claim it for ``claim_id``: ``row['claim'] == claim_id`` when
    this request is to execute. None: retry (a concurrent claim is not visible yet)."""
    return await conn.fetchrow(_CLAIM, device_id, key, operation, body_mac, claim_id, ttl, lease, body_kek_id)


async def complete(conn: Executor, *, device_id: uuid.UUID, key: str, claim_id: uuid.UUID, status: int,
                   response: bytes) -> None:
    await conn.execute("UPDATE idempotency_keys SET status = $4, response = $5, completed_at = now()"
                       " WHERE device_id = $1 AND key = $2 AND claim = $3",
                       device_id, key, claim_id, status, response)


async def release(conn: Executor, *, device_id: uuid.UUID, key: str, claim_id: uuid.UUID) -> None:
    """Forget a claim whose answer is not replayed, so a retry with the key executes afresh."""
    await conn.execute("DELETE FROM idempotency_keys WHERE device_id = $1 AND key = $2 AND claim = $3",
                       device_id, key, claim_id)


async def expire(conn: Executor, ttl: timedelta) -> int:
    """Delete keys older than ``ttl``; returns how many went."""
    status = await conn.execute("DELETE FROM idempotency_keys WHERE created_at <= now() - $1::interval", ttl)
    return int(status.split()[-1])
