"""Master key rotation: rewrap every stored data key under the current master key (KEK).

The wrapped keys are in the key store (``flighttoken/db/keystore.py``); the service database and its
templates are never read or rewritten: data keys don't change, only their wrapping does. The document
MAC key (``flighttoken/crypto/document_key.py``) is rewrapped the same way, so document keys stored in
the service database keep matching after the old master key is gone. Steps for
an operator (see flighttoken/crypto/keys.py): put the new KEK first in the keyring everywhere, run
``flighttoken keys rotate``, then remove the old KEK. Removing it is also what makes any copy of the
key store taken before a purge useless (its keys are still wrapped under the old KEK).

Each batch is read, rewrapped off the event loop and written back only where the row is unchanged
since it was read, so a purge or a second rotation running at the same time is never overwritten.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import msgspec

from flighttoken.crypto.document_key import document_mac_context
from flighttoken.crypto.keys import MasterKey, UnknownKekError, WrappedKey, generate_master_key
from flighttoken.crypto.sealing import DecryptionError
from flighttoken.db.keystore import KeyStore, KeyStoreError
from flighttoken.db.queries import audit
from flighttoken.db.queries import keystore as q
from flighttoken.executor import run_blocking
from flighttoken.privacy import document_keys
from flighttoken.privacy.vault import MasterKeyError, flight_context, load_master_key
from flighttoken.settings import Settings
from flighttoken.watchlist.vault import key_context as watchlist_key_context

BATCH = 500
# Wrapped key tables and the wrap context of each row.
CONTEXTS = {"flight_data_keys": flight_context, "watchlist_data_keys": watchlist_key_context,
            "document_mac_keys": document_mac_context}


class RotationReport(msgspec.Struct):
    current_kek: str
    rewrapped: int = 0
    already_current: int = 0
    unreadable: int = 0
    """Wrapped under a KEK missing from the ring, or failing authentication: left untouched."""
    unknown_keks: list[str] = msgspec.field(default_factory=list)


def _rewrap_batch(master: MasterKey, table: str, rows) -> tuple[list[tuple], list[str], int]:
    out, unknown, failed = [], [], 0
    for r in rows:
        old = WrappedKey(r["kek_id"], bytes(r["wrapped"]))
        try:
            new = master.rewrap(old, CONTEXTS[table](r["owner_id"]))
        except UnknownKekError:
            unknown.append(old.kek_id)
            continue
        except DecryptionError:
            failed += 1
            continue
        out.append((r["owner_id"], old.kek_id, old.wrapped, new.kek_id, new.wrapped))
    return out, unknown, failed


async def rotate(keystore: KeyStore, pool, master: MasterKey, *, actor: str = "cli") -> RotationReport:
    """Rewrap the key store's keys; the ``keys.rotate`` audit event goes to the service database ``pool``."""
    report = RotationReport(current_kek=master.current_id)
    unknown: set[str] = set()
    ks = keystore.pool
    for table in CONTEXTS:
        report.already_current += (await q.keys_by_kek(ks, table)).get(master.current_id, 0)
        after: uuid.UUID | None = None
        while rows := await q.keys_to_rewrap(ks, table, master.current_id, after, BATCH):
            after = rows[-1]["owner_id"]
            swapped, missing, failed = await run_blocking(_rewrap_batch, master, table, rows)
            unknown.update(missing)
            report.unreadable += len(missing) + failed
            report.rewrapped += await q.replace_wrapped(ks, table, swapped)
    report.unknown_keks = sorted(unknown)
    await audit.record(pool, actor=actor, action="keys.rotate", outcome="ok" if not report.unreadable else "error",
                       detail=msgspec.to_builtins(report))
    return report


@contextlib.asynccontextmanager
async def key_databases(settings: Settings, master: MasterKey | None = None) -> AsyncIterator[tuple[object, KeyStore]]:
    """The migrated service pool and the key store, for one-off commands (0010 needs ``master`` on a
    database that still holds unkeyed document digests)."""
    from flighttoken.db.embedded import EmbeddedPostgres
    from flighttoken.db.migrate import apply_migrations
    from flighttoken.db.pool import create_pool

    async with contextlib.AsyncExitStack() as stack:
        dsn = settings.database.database_url
        if not dsn:
            embedded = EmbeddedPostgres(settings.database.data_dir)
            dsn = await run_blocking(embedded.start)
            stack.push_async_callback(run_blocking, embedded.stop)
        pool = await create_pool(dsn, settings)
        stack.push_async_callback(pool.close)
        keystore = await KeyStore.open(dsn, settings)
        stack.push_async_callback(keystore.close)
        async with pool.acquire() as conn:
            await apply_migrations(conn, hooks=document_keys.migration_hooks(keystore, master))
        yield pool, keystore


async def _rotate_command(settings: Settings) -> RotationReport:
    master = load_master_key(settings)
    async with key_databases(settings, master) as (pool, keystore):
        return await rotate(keystore, pool, master)


def run_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from flighttoken.db.embedded import EmbeddedDatabaseError
    from flighttoken.db.migrate import MigrationError
    from flighttoken.db.pool import DatabaseUnreachable

    try:
        report = asyncio.run(_rotate_command(settings))
    except (MasterKeyError, KeyStoreError, EmbeddedDatabaseError, DatabaseUnreachable, MigrationError) as exc:
        print(f"flighttoken: {exc}")
        return 2
    print(f"rewrapped {report.rewrapped} data keys under {report.current_kek}; "
          f"{report.already_current} already current; {report.unreadable} unreadable")
    if report.unreadable:
        hint = f" (wrapped under {', '.join(report.unknown_keks)})" if report.unknown_keks else ""
        print(f"flighttoken: {report.unreadable} data keys could not be rewrapped{hint}: put their master key "
              "back in the keyring, after the current one, and run again")
        return 1
    return 0


def run_generate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        print(generate_master_key(args.id))
    except ValueError as exc:
        print(f"flighttoken: {exc}")
        return 2
    return 0


def add_arguments(keys: argparse._SubParsersAction) -> None:
    rotate_p = keys.add_parser("rotate", help="rewrap every data key under the current (first) master key")
    rotate_p.set_defaults(run=run_rotate)
    generate = keys.add_parser("generate", help="print a new master keyring entry (put it first in the ring)")
    generate.add_argument("--id", help="key id (default: kek-<date>-<random>)")
    generate.set_defaults(run=run_generate)
