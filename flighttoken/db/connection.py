"""The connection types every query takes: a connection of our own, one borrowed from the pool
(asyncpg hands out a ``PoolConnectionProxy``, not a ``Connection``), or the pool itself."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection = asyncpg.Connection | PoolConnectionProxy
Executor = Connection | asyncpg.Pool
