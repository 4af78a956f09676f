"""Schema migrations: ``migrations/NNNN_name.sql`` applied in order, all or nothing.

Each run takes a transaction-level advisory lock, so two instances starting together apply every
migration exactly once; all pending files run in that one transaction, so a failure leaves the
schema exactly as it was and start-up stops. Applied files are recorded with a checksum; an applied
file edited afterwards is refused rather than silently ignored.

The key store (``flighttoken/db/keystore.py``) is migrated by the same code from its own folder,
``migrations/keystore/``, under its own lock key. A *hook* runs inside the migration transaction
just before its version is applied (with the lock held): how 0006 moves the wrapped data keys out
of the service database before dropping their columns.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from flighttoken.db.connection import Connection

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Arbitrary but fixed: the key every FlightToken instance locks on while migrating.
ADVISORY_LOCK_KEY = 0x466C7454  # "FlTT"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


Hook = Callable[[Connection], Awaitable[None]]


class MigrationError(Exception):
    """A migration could not be applied; the schema is unchanged."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_lower_snake.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


async def apply_migrations(conn: Connection, migrations: list[Migration] | None = None, *,
                           lock_key: int = ADVISORY_LOCK_KEY, hooks: Mapping[int, Hook] | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date). ``hooks[version]``
    runs in the same transaction right before that version is applied (and only then)."""
    migrations = discover() if migrations is None else migrations
    hooks = hooks or {}
    applied_now: list[str] = []
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")}
            for m in migrations:
                if m.version in done:
                    if done[m.version]["checksum"] != m.checksum:
                        raise MigrationError(f"{m.name} was changed after it was applied; add a new migration")
                    continue
                if m.version in hooks:
                    await hooks[m.version](conn)
                try:
                    await conn.execute(m.sql)
                except asyncpg.PostgresError as exc:
                    raise MigrationError(f"{m.name} failed: {exc}") from None
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version, m.name, m.checksum,
                )
                applied_now.append(m.name)
    except MigrationError:
        log.error("migrations_failed_schema_unchanged")
        raise
    if applied_now:
        log.info("migrations_applied", applied=applied_now)
    return applied_now
