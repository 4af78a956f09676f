"""Watchlist templates at rest: sealed under a watchlist data key, wrapped by the master key.

Same envelope as passenger templates (``privacy/vault.py``) but its own keys, bound to the context
``watchlist:<key id>``: a flight purge never touches them, and a watchlist key can never unwrap as
a flight's key or the other way round. The wrapped keys live in the key store
(``flighttoken/db/keystore.py``), written there before their id (``watchlist_keys``) is written to
the service database; master key rotation (``flighttoken keys rotate``) rewraps them there.
"""

from __future__ import annotations

import uuid

import numpy as np

from flighttoken.crypto.keys import new_data_key
from flighttoken.crypto.sealing import open_sealed, seal
from flighttoken.db.connection import Connection, Executor
from flighttoken.db.queries import watchlist as q
from flighttoken.privacy.vault import TEMPLATE_DTYPE, TemplateVault


def key_context(key_id: uuid.UUID) -> bytes:
    return b"watchlist:" + str(key_id).encode()


def template_aad(subject_id: uuid.UUID, n: int, model_id: str) -> bytes:
    return b"watchlist-subject:" + str(subject_id).encode() + b":photo:" + str(n).encode() + b":model:" + \
        model_id.encode()


async def current_key(vault: TemplateVault, conn: Connection) -> tuple[uuid.UUID, bytes]:
    """The key new templates are sealed with, created on first use (call inside a transaction)."""
    await q.lock_keys(conn)
    key_id = await q.current_key(conn)
    if key_id is None:
        key_id = uuid.uuid4()
        dek = new_data_key()
        await vault.keystore.add_watchlist_key(key_id, vault.master.wrap(dek, key_context(key_id)))
        await q.insert_key_marker(conn, key_id)
        vault.keys.put(key_context(key_id), dek)
        return key_id, dek
    return key_id, await key(vault, conn, key_id)


async def key(vault: TemplateVault, conn: Executor | None, key_id: uuid.UUID) -> bytes:
    """A watchlist data key by id (``conn`` unused: keys come from the key store)."""
    context = key_context(key_id)
    cached = vault.keys.get(context)
    if cached is not None:
        return cached
    wrapped = await vault.keystore.watchlist_key(key_id)
    if wrapped is None:
        raise LookupError(f"watchlist key {key_id} is missing from the key store")
    return vault.keys.unwrap(context, wrapped)


def seal_template(dek: bytes, subject_id: uuid.UUID, n: int, model_id: str, vector: np.ndarray) -> bytes:
    return seal(dek, np.asarray(vector, dtype=TEMPLATE_DTYPE).tobytes(), template_aad(subject_id, n, model_id))


def open_template(dek: bytes, subject_id: uuid.UUID, n: int, model_id: str, blob: bytes) -> np.ndarray:
    return np.frombuffer(open_sealed(dek, blob, template_aad(subject_id, n, model_id)), dtype=TEMPLATE_DTYPE)

