"""Migrations apply once under concurrency and all-or-nothing on failure."""

import asyncio
from pathlib import Path

import asyncpg
import pytest

from flighttoken.db.migrate import Migration, MigrationError, apply_migrations, discover

SCHEMA_TABLES = """SELECT table_name FROM information_schema.tables
                   WHERE table_schema = 'public' ORDER BY table_name"""


@pytest.fixture
async def conn(admin_dsn: str):
    from flighttoken.testing import create_database, drop_database

    name, url = await create_database(admin_dsn)
    c = await asyncpg.connect(url)
    try:
        yield c, url
    finally:
        await c.close()
        await drop_database(admin_dsn, name)


async def test_the_repository_migrations_apply_and_are_then_up_to_date(conn) -> None:
    c, _ = conn
    applied = await apply_migrations(c)
    assert applied == [m.name for m in discover()]
    assert await apply_migrations(c) == []


async def test_two_starters_at_once_apply_each_migration_once(conn) -> None:
    _, url = conn
    slow = [
        Migration(1, "0001_a.sql", "CREATE TABLE a (x int); SELECT pg_sleep(0.5);"),
        Migration(2, "0002_b.sql", "CREATE TABLE b (x int);"),
    ]
    c1, c2 = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        first, second = await asyncio.gather(apply_migrations(c1, slow), apply_migrations(c2, slow))
    finally:
        await c1.close()
        await c2.close()
    assert sorted([first, second], key=len) == [[], ["0001_a.sql", "0002_b.sql"]]


async def test_a_failing_migration_leaves_the_schema_unchanged(conn) -> None:
    c, _ = conn
    await apply_migrations(c, [Migration(1, "0001_ok.sql", "CREATE TABLE kept (x int);")])
    before = await c.fetch(SCHEMA_TABLES)
    broken = [
        Migration(1, "0001_ok.sql", "CREATE TABLE kept (x int);"),
        Migration(2, "0002_new.sql", "CREATE TABLE half (x int);"),
        Migration(3, "0003_bad.sql", "CREATE TABLE worse (x int); SELECT * FROM no_such_table;"),
    ]
    with pytest.raises(MigrationError, match=r"0003_bad\.sql"):
        await apply_migrations(c, broken)
    assert await c.fetch(SCHEMA_TABLES) == before
    assert await c.fetchval("SELECT max(version) FROM schema_migrations") == 1


async def test_an_applied_migration_edited_later_is_refused(conn) -> None:
    c, _ = conn
    await apply_migrations(c, [Migration(1, "0001_x.sql", "CREATE TABLE x (a int);")])
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await apply_migrations(c, [Migration(1, "0001_x.sql", "CREATE TABLE x (a bigint);")])


def test_badly_named_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNNN_lower_snake"):
        discover(tmp_path)


async def test_0011_moves_the_authority_trail_to_its_own_table_with_its_ids(conn) -> None:
    c, _ = conn
    await apply_migrations(c, [m for m in discover() if m.version < 11])
    for action in ("token.enrol", "watchlist.subject.enrol", "audit.read_events", "watchlist.alert", "flight.close"):
        await c.execute("INSERT INTO audit_events (actor, action, outcome, detail)"
                        " VALUES ('system', $1, 'ok', '{\"n\": 1}')", action)
    before = {r["action"]: r["id"] for r in await c.fetch("SELECT id, action FROM audit_events")}

    assert (await apply_migrations(c))[0] == "0011_authority_audit.sql"
    public = {r["action"]: r["id"] for r in await c.fetch("SELECT id, action FROM audit_events")}
    moved = {r["action"]: r["id"] for r in await c.fetch("SELECT id, action FROM authority_audit_events")}
    assert public == {a: i for a, i in before.items() if not a.startswith("watchlist.")}
    assert moved == {a: i for a, i in before.items() if a.startswith("watchlist.")}
    # The authority's sequence continues after the moved ids; the public one is untouched by it.
    new_id = await c.fetchval("INSERT INTO authority_audit_events (actor, action, outcome)"
                              " VALUES ('system', 'watchlist.x', 'ok') RETURNING id")
    assert new_id == max(moved.values()) + 1
    # Both tables are append-only again.
    for table in ("audit_events", "authority_audit_events"):
        for sql in (f"DELETE FROM {table}", f"UPDATE {table} SET outcome = 'x'", f"TRUNCATE {table}"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await c.execute(sql)
