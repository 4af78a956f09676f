"""The connection types every query takes: a connection of our own, one borrowed from the pool
(asyncpg hands out a ``PoolConnectionProxy``, not a ``Connection``), or the pool itself."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection = asyncpg.Connection | PoolConnectionProxy
Executor = Connection | asyncpg.Pool


def one(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row of a statement that always returns one (an aggregate, INSERT ... RETURNING, an
    UPDATE ... RETURNING of a row the caller holds)."""
    assert row is not None, "the statement returned no row"
    return row
