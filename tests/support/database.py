"""Real PostgreSQL for tests: ``DATABASE_URL`` when set (CI), else the embedded server.

Each test module that asks for a database gets a brand-new one, so tests never see each
other's rows and can run migrations from scratch. The service creates its key store next to it
(``<name>_keys``); dropping the database drops that too.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from flighttoken.db.keystore import SUFFIX as KEYSTORE_SUFFIX


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def create_database(admin_dsn: str) -> tuple[str, str]:
    name = "ft_test_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    """Drop the database and its default key store (``<name>_keys``, created by the service)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        for db in (name, name + KEYSTORE_SUFFIX):
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await conn.close()
