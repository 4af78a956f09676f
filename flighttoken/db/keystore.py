"""The key store: wrapped data keys (flights, watchlist) in a PostgreSQL database of their own.

Why not in the service database: a purge destroys a flight's data key so that every copy of its
templates becomes noise. A routine backup of the service database holds the templates; if it also
held the wrapped keys, restoring it (with the master key, which every instance has) would resurrect
a purged flight. With the keys here, no dump or restore of the service database ever contains a
key, and a purge deletes the one copy that matters, in this small database that is kept out of
long-retention backups (ops/README.md, "Backups").

Why a PostgreSQL database and not a file or a KMS: every instance must see a key the moment another
creates it and lose it the moment another purges, with the transactions and availability the
service database already has; a file needs a shared filesystem with its own locking and backups, a
KMS an external dependency. An external KMS could implement the same few methods later.

Where: ``FLIGHTTOKEN_KEYSTORE_URL``, or by default the sibling database ``<service db>_keys`` on the
same server, created at start-up. That default keeps keys out of ``pg_dump`` of the service
database, not out of cluster-level (physical) backups and WAL archives: production with those uses
a key store on another cluster. Migrations: ``migrations/keystore/``, under their own lock.

Consistency with the service database (two databases, no shared transaction):
  * a key is written here (committed) before its marker row in the service database's
    ``flight_keys`` / ``watchlist_keys``; a rolled-back caller leaves an unused key, never a marker
    without a key;
  * a purge deletes the key here (committed, with a tombstone) before the marker and the templates;
    a purge that finds the key already gone carries on (``flighttoken/privacy/purge.py``).
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from flighttoken.crypto.keys import WrappedKey
from flighttoken.db.connection import Connection
from flighttoken.db.migrate import MIGRATIONS_DIR, Hook, MigrationError, apply_migrations, discover
from flighttoken.db.pool import DatabaseUnreachable, create_pool
from flighttoken.db.queries import keystore as q
from flighttoken.db.queries import privacy as privacy_q
from flighttoken.settings import Settings

log = structlog.get_logger(__name__)

KEYSTORE_MIGRATIONS_DIR = MIGRATIONS_DIR / "keystore"
KEYSTORE_LOCK_KEY = 0x466C744B  # "FltK": not the service database's lock
SUFFIX = "_keys"
SETTING = "FLIGHTTOKEN_KEYSTORE_URL"
# The service migration that drops the wrapped-key columns; its hook moves the keys here first.
MOVE_KEYS_VERSION = 6


class KeyStoreError(Exception):
    """The key store can't be used; the message says what to fix."""


def sibling_database(service_dsn: str) -> tuple[str, str]:
    """(name, DSN) of the default key store: ``<service db>_keys`` on the service database's server."""
    parts = urlsplit(service_dsn)
    name = parts.path.lstrip("/")
    if not name:
        raise KeyStoreError(f"{SETTING}: the service database URL names no database, so the key store's "
                            f"can't be derived from it; set {SETTING}")
    name += SUFFIX
    if len(name.encode()) > 63:
        raise KeyStoreError(f"{SETTING}: the default key store name {name!r} is longer than PostgreSQL allows; "
                            f"set {SETTING}")
    return name, urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _create_sibling(service_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(service_dsn)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            log.info("keystore_database_created", database=name)
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # another instance starting at the same moment created it
        except asyncpg.InsufficientPrivilegeError:
            raise KeyStoreError(f"{SETTING}: not allowed to create the key store database {name!r}; create it "
                                f"(CREATE DATABASE \"{name}\") or point {SETTING} at one") from None
    finally:
        await conn.close()


class KeyStore:
    """Wrapped data keys; every write commits on its own (it never joins a service transaction)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, service_dsn: str, settings: Settings) -> KeyStore:
        """Connect (creating the default sibling database if needed) and migrate."""
        dsn = settings.database.keystore_url
        if not dsn:
            name, dsn = sibling_database(service_dsn)
            try:
                await _create_sibling(service_dsn, name)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise KeyStoreError(f"{SETTING}: cannot create the key store database {name!r} "
                                    f"({type(exc).__name__}: {exc})") from None
        try:
            pool = await create_pool(dsn, settings, setting=SETTING, min_size=1,
                                     max_size=settings.database.keystore_pool_max)
        except DatabaseUnreachable as exc:
            raise KeyStoreError(str(exc)) from None
        store = cls(pool)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def _migrate(self) -> None:
        async with self.pool.acquire() as conn:
            # Keys next to templates would be in every dump of the service database: refuse.
            if await conn.fetchval("SELECT to_regclass('templates') IS NOT NULL OR to_regclass('flights') IS NOT NULL"):
                raise KeyStoreError(f"{SETTING}: points at the service database; the key store must be a "
                                    "database of its own")
            try:
                await apply_migrations(conn, discover(KEYSTORE_MIGRATIONS_DIR), lock_key=KEYSTORE_LOCK_KEY)
            except MigrationError as exc:
                raise KeyStoreError(f"{SETTING}: key store migration failed: {exc}") from None

    async def close(self) -> None:
        await self.pool.close()

    # ---- flight keys ------------------------------------------------------------------------------

    async def add_flight_key(self, flight_id: uuid.UUID, key_id: uuid.UUID, wrapped: WrappedKey) -> uuid.UUID:
        """Store the flight's key unless it has one; the id of the key stored either way."""
        return await q.insert_flight_key(self.pool, flight_id, key_id, wrapped.kek_id, wrapped.wrapped)

    async def flight_key(self, flight_id: uuid.UUID) -> WrappedKey | None:
        """The flight's wrapped key; None once destroyed (or if this key store never had it)."""
        row = await q.flight_key(self.pool, flight_id)
        if row is not None:
            return WrappedKey(row["kek_id"], bytes(row["wrapped"]))
        if not await q.is_destroyed(self.pool, flight_id):
            # Every flight gets its key before it exists: no key and no tombstone means this is not the
            # key store the flight was created with (or it was lost). Its data can't be read here.
            log.error("flight_key_missing", flight_id=str(flight_id),
                      hint=f"do all instances use the same key store ({SETTING})? was it restored or lost?")
        return None

    async def destroy_flight_keys(self, flight_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
        """Crypto-shredding: delete the keys (committed on return). Tombstones of every flight among
        ``flight_ids`` whose key is gone, by this call or an earlier one."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await q.destroy_flight_keys(conn, flight_ids)

    # ---- watchlist keys ---------------------------------------------------------------------------

    async def add_watchlist_key(self, key_id: uuid.UUID, wrapped: WrappedKey) -> None:
        await q.insert_watchlist_key(self.pool, key_id, wrapped.kek_id, wrapped.wrapped)

    async def watchlist_key(self, key_id: uuid.UUID) -> WrappedKey | None:
        row = await q.watchlist_key(self.pool, key_id)
        return WrappedKey(row["kek_id"], bytes(row["wrapped"])) if row else None

    # ---- the document MAC key (flighttoken/crypto/document_key.py) ----------------------------------

    async def add_document_mac_key(self, key_id: uuid.UUID, wrapped: WrappedKey) -> None:
        """Store it unless the deployment has one already; read :meth:`document_mac_key` for the winner."""
        await q.insert_document_mac_key(self.pool, key_id, wrapped.kek_id, wrapped.wrapped)

    async def document_mac_key(self) -> tuple[uuid.UUID, WrappedKey] | None:
        row = await q.document_mac_key(self.pool)
        return (row["id"], WrappedKey(row["kek_id"], bytes(row["wrapped"]))) if row else None

    # ---- moving keys out of the service database (migration 0006) -----------------------------------

    def service_migration_hooks(self) -> dict[int, Hook]:
        """Pass to :func:`apply_migrations` of the service database."""
        return {MOVE_KEYS_VERSION: self._move_keys_from_service_database}

    async def _move_keys_from_service_database(self, conn: Connection) -> None:
        """Copy every wrapped key from the service database (inside its migration transaction, with its
        key tables locked) and check every one arrived intact; only then may 0006 drop them there.
        Idempotent: a crash before 0006 commits leaves both copies, and the next start does it again."""
        if not await privacy_q.has_legacy_wrapped_keys(conn):
            await privacy_q.declare_keys_moved(conn)  # a fresh database: no key table yet
            return
        flights, watchlist = await privacy_q.lock_legacy_keys(conn)
        flight_rows = [(r["flight_id"], r["key_id"], r["kek_id"], bytes(r["wrapped"])) for r in flights]
        watchlist_rows = [(r["id"], r["kek_id"], bytes(r["wrapped"])) for r in watchlist]
        try:
            async with self.pool.acquire() as ks, ks.transaction():
                moved_flights = await q.adopt_flight_keys(ks, flight_rows)
                moved_watchlist = await q.adopt_watchlist_keys(ks, watchlist_rows)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise MigrationError(f"0006: could not copy the data keys to the key store ({type(exc).__name__}: "
                                 f"{exc}); nothing was dropped") from None
        if (moved_flights, moved_watchlist) != (len(flight_rows), len(watchlist_rows)):
            differ = len(flight_rows) - moved_flights + len(watchlist_rows) - moved_watchlist
            raise MigrationError(f"0006: {differ} data keys differ from the key store's copy; nothing was dropped "
                                 "(is the key store another deployment's?)")
        await privacy_q.declare_keys_moved(conn)
        log.info("data_keys_moved_to_keystore", flight_keys=moved_flights, watchlist_keys=moved_watchlist)
