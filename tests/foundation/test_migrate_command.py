"""`flighttoken migrate`, the one-off command an operator runs before a rolling upgrade: it migrates
the service database and its key store exactly as start-up does, and a second run changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

from flighttoken.db.keystore import SUFFIX as KEYSTORE_SUFFIX
from flighttoken.testing import with_database


def _migrate(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTTOKEN_")}
    env.update(DATABASE_URL=database_url, FLIGHTTOKEN_LOG_FORMAT="console")
    return subprocess.run([sys.executable, "-m", "flighttoken", "migrate"], env=env, capture_output=True,
                          text=True, timeout=120)


async def test_migrate_applies_every_migration_and_creates_the_key_store_once(database_url, admin_dsn) -> None:
    first = _migrate(database_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied: 0001"), first.stdout

    conn = await asyncpg.connect(database_url)
    try:
        applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        key_columns = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'flight_keys' AND column_name = 'wrapped'")
    finally:
        await conn.close()
    assert applied >= 6
    assert key_columns == 0, "after 0006 the service database holds no wrapped keys"

    keystore_name = database_url.rsplit("/", 1)[1] + KEYSTORE_SUFFIX
    conn = await asyncpg.connect(with_database(admin_dsn, keystore_name))
    await conn.close()  # it exists: connecting would raise InvalidCatalogNameError otherwise

    second = _migrate(database_url)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "schema is up to date"
