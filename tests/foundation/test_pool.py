"""The connection pool's release step (issue 4): no reset round trip for a connection left clean,
and an open transaction still never reaches the next user."""

from __future__ import annotations

import pytest

from flighttoken.db.pool import create_pool


@pytest.fixture(scope="module")
async def pool(base_settings, database_url):
    settings = base_settings.replace(database_url=database_url, db_pool_min=1, db_pool_max=1)
    p = await create_pool(database_url, settings)
    async with p.acquire() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS pool_probe (n int)")
    try:
        yield p
    finally:
        await p.close()


async def test_releasing_a_clean_connection_sends_nothing(pool) -> None:
    sent: list[str] = []

    def record(query) -> None:
        sent.append(query.query)

    async with pool.acquire() as conn:
        raw = conn._con  # the connection behind the pool's proxy: the logger must outlive the release
        raw.add_query_logger(record)
        await conn.fetchval("SELECT 1")
    async with pool.acquire() as conn:
        assert conn._con is raw  # one connection in the pool: the same one again
    raw.remove_query_logger(record)
    # asyncpg's default would have sent "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL" twice.
    assert sent == ["SELECT 1"]


async def test_a_transaction_left_open_is_rolled_back_on_release(pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO pool_probe VALUES (1)")
        await conn.execute("SET LOCAL statement_timeout = '1234ms'")
    async with pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT count(*) FROM pool_probe") == 0
        assert await conn.fetchval("SHOW statement_timeout") != "1234ms"
