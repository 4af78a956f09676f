"""The deployment's document MAC key: created once in the key store, loaded at start-up, and the
one-time keying of the unkeyed digests stored before migration 0010 (why a keyed MAC, and why this
key: ``flighttoken/crypto/document_key.py``)."""

from __future__ import annotations

import functools
import uuid

import asyncpg
import structlog

from flighttoken.crypto.document_key import DocumentKeys
from flighttoken.crypto.keys import MasterKey, UnknownKekError
from flighttoken.crypto.sealing import DecryptionError
from flighttoken.db.connection import Connection, Executor
from flighttoken.db.keystore import SETTING, KeyStore
from flighttoken.db.migrate import Hook, MigrationError
from flighttoken.db.queries import document_keys as q
from flighttoken.executor import run_blocking

log = structlog.get_logger(__name__)

KEYED_VERSION = 10  # migrations/0010_keyed_document_keys.sql
BATCH = 5000


class DocumentKeyError(Exception):
    """The document MAC key can't be used; the message says what to fix."""


async def load(keystore: KeyStore, master: MasterKey) -> DocumentKeys:
    """The deployment's document MAC key, created (wrapped under the current master key) if it has none.
    Two instances starting at once both read back the one the key store kept."""
    stored = await keystore.document_mac_key()
    if stored is None:
        fresh = DocumentKeys.generate()
        await keystore.add_document_mac_key(fresh.key_id, fresh.wrap(master))
        stored = await keystore.document_mac_key()
        assert stored is not None
    key_id, wrapped = stored
    try:
        return DocumentKeys.unwrap(key_id, wrapped, master)
    except (UnknownKekError, DecryptionError) as exc:
        raise DocumentKeyError(f"the document MAC key in the key store cannot be unwrapped: {exc}") from None


async def bind(conn: Executor, keys: DocumentKeys) -> None:
    """Record the key's id in the service database on first use; refuse a key store whose key is not
    the one this database's document keys were made with (a new key would key every document apart
    from its tokens: no look-up or opt-out would find them, and a re-enrolment would make a second token)."""
    recorded = await q.record_mac_key(conn, keys.key_id)
    if recorded != keys.key_id:
        raise DocumentKeyError(
            f"{SETTING}: the key store's document MAC key ({keys.key_id}) is not the one this database's document "
            f"keys were made with ({recorded}); point every instance at the deployment's own key store")


def migration_hooks(keystore: KeyStore, master: MasterKey | None) -> dict[int, Hook]:
    """The key store's hooks, plus 0010's keying of old digests when the master key is at hand."""
    hooks = keystore.service_migration_hooks()
    if master is not None:
        hooks[KEYED_VERSION] = functools.partial(_key_old_digests, keystore, master)
    return hooks


def _mac_batch(keys: DocumentKeys, rows) -> list[tuple[uuid.UUID, bytes]]:
    return [(r["id"], keys.of_unkeyed(bytes(r["document_key"]))) for r in rows]


async def _key_old_digests(keystore: KeyStore, master: MasterKey, conn: Connection) -> None:
    """Inside 0010's transaction, lock held: every stored SHA-256 digest becomes HMAC(k, digest), so
    look-ups and opt-out find pre-0010 tokens with the new key. A failure rolls it all back."""
    await q.lock_tables(conn)  # first: no row may slip in unkeyed between the look and the declaration
    if await q.has_rows(conn):
        try:
            keys = await load(keystore, master)
        except (DocumentKeyError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise MigrationError(f"0010: no document MAC key ({exc}); nothing was changed") from None
        keyed = {}
        for table in q.TABLES:
            keyed[table], after = 0, None
            while rows := await q.digests_after(conn, table, after, BATCH):
                after = rows[-1]["id"]
                keyed[table] += await q.replace(conn, table, await run_blocking(_mac_batch, keys, rows))
        log.info("document_keys_keyed", **keyed)
    await q.declare_keyed(conn)
