"""Open the service database and the key store, migrated: the one start-up path of the service and
of every one-off command (``flighttoken migrate``, ``devices add``, ``keys rotate``).

Order: embedded PostgreSQL (only without DATABASE_URL) → service pool → key store (connected and
migrated) → the caller's ``prepare`` → service migrations. The key store comes before the service
migrations: 0006 moves the wrapped data keys into it, 0010 keys the stored document digests with
the document MAC key it holds. Closed in the reverse order.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import asyncpg

from flighttoken.db.embedded import EmbeddedDatabaseError, EmbeddedPostgres
from flighttoken.db.keystore import KeyStore, KeyStoreError
from flighttoken.db.migrate import Hook, MigrationError, apply_migrations
from flighttoken.db.pool import DatabaseUnreachable, create_pool
from flighttoken.executor import run_blocking
from flighttoken.settings import Settings

DATABASE_ERRORS = (EmbeddedDatabaseError, DatabaseUnreachable, KeyStoreError, MigrationError)
"""What :func:`open_databases` raises with a one-line message saying what to fix."""

Prepare = Callable[[asyncpg.Pool, KeyStore], Awaitable[Mapping[int, Hook]]]
"""Runs once both databases are open, before the service migrations; returns their hooks."""


@dataclass(frozen=True)
class Databases:
    dsn: str
    """The service database's DSN (the embedded server's when there is no DATABASE_URL)."""
    pool: asyncpg.Pool
    keystore: KeyStore
    applied: list[str]
    """The service migrations this opening applied."""


async def _keystore_hooks(pool: asyncpg.Pool, keystore: KeyStore) -> Mapping[int, Hook]:
    return keystore.service_migration_hooks()


@contextlib.asynccontextmanager
async def open_databases(settings: Settings, prepare: Prepare = _keystore_hooks) -> AsyncIterator[Databases]:
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
        hooks = await prepare(pool, keystore)
        async with pool.acquire() as conn:
            applied = await apply_migrations(conn, hooks=hooks)
        yield Databases(dsn, pool, keystore, applied)
