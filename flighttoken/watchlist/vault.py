"""Watchlist templates at rest: sealed under a watchlist data key, wrapped by the master key.

Same envelope as passenger templates (``privacy/vault.py``) but its own keys, bound to the context
``watchlist:<key id>``: a flight purge never touches them, and a watchlist key can never unwrap as
a flight's key or the other way round. Master key rotation (``flighttoken keys rotate``) rewraps
``watchlist_keys`` rows under this same context.
"""

from __future__ import annotations

import uuid

import asyncpg
import numpy as np

from flighttoken.crypto.keys import WrappedKey, new_data_key
from flighttoken.crypto.sealing import open_sealed, seal
from flighttoken.db.queries import watchlist as q
from flighttoken.privacy.vault import TEMPLATE_DTYPE, TemplateVault


def key_context(key_id: uuid.UUID) -> bytes:
    return b"watchlist:" + str(key_id).encode()


def template_aad(subject_id: uuid.UUID, n: int, model_id: str) -> bytes:
    return b"watchlist-subject:" + str(subject_id).encode() + b":photo:" + str(n).encode() + b":model:" + \
        model_id.encode()


async def current_key(vault: TemplateVault, conn: asyncpg.Connection) -> tuple[uuid.UUID, bytes]:
    """The key new templates are sealed with, created on first use (call inside a transaction)."""
    await q.lock_keys(conn)
    row = await q.current_key(conn)
    if row is None:
        key_id = uuid.uuid4()
        dek = new_data_key()
        wrapped = vault.master.wrap(dek, key_context(key_id))
        await q.insert_key(conn, key_id, wrapped.kek_id, wrapped.wrapped)
        vault.keys.put(key_context(key_id), dek)
        return key_id, dek
    return row["id"], _unwrap(vault, row)


async def key(vault: TemplateVault, conn: asyncpg.Connection | asyncpg.Pool, key_id: uuid.UUID) -> bytes:
    cached = vault.keys.get(key_context(key_id))
    if cached is not None:
        return cached
    row = await q.key_by_id(conn, key_id)
    if row is None:
        raise LookupError(f"watchlist key {key_id} is missing")
    return _unwrap(vault, row)


def _unwrap(vault: TemplateVault, row: asyncpg.Record) -> bytes:
    context = key_context(row["id"])
    return vault.keys.get(context) or vault.keys.unwrap(context, WrappedKey(row["kek_id"], bytes(row["wrapped"])))


def seal_template(dek: bytes, subject_id: uuid.UUID, n: int, model_id: str, vector: np.ndarray) -> bytes:
    return seal(dek, np.asarray(vector, dtype=TEMPLATE_DTYPE).tobytes(), template_aad(subject_id, n, model_id))


def open_template(dek: bytes, subject_id: uuid.UUID, n: int, model_id: str, blob: bytes) -> np.ndarray:
    return np.frombuffer(open_sealed(dek, blob, template_aad(subject_id, n, model_id)), dtype=TEMPLATE_DTYPE)

