"""The asyncpg connection pool."""

from __future__ import annotations

import asyncpg
import structlog

from flighttoken.db.connection import Connection
from flighttoken.settings import Settings

log = structlog.get_logger(__name__)


class DatabaseUnreachable(Exception):
    """Start-up could not connect; the message says what to fix."""


async def _reset(conn: Connection) -> None:
    """What a released connection needs beyond asyncpg's own step, which always runs first (it rolls
    back an open transaction and drops listener callbacks): nothing. asyncpg's default adds
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` (~0.9 ms, a round trip on
    every release), and none of it can be left over here: our advisory locks are transaction-level
    (``pg_advisory_xact_lock``), settings ``SET LOCAL`` / ``set_config(..., true)``, no cursor
    outlives its transaction, and LISTEN has a connection of its own outside the pool
    (sync/listener.py). Session-level state on a pool connection would leak to the next request:
    don't add any (tests/foundation/test_pool.py)."""


async def create_pool(dsn: str, settings: Settings, *, setting: str = "DATABASE_URL", min_size: int | None = None,
                      max_size: int | None = None) -> asyncpg.Pool:
    """A pool, or DatabaseUnreachable with one line naming ``setting`` (the variable that holds ``dsn``)."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=settings.database.db_pool_min if min_size is None else min_size,
            max_size=settings.database.db_pool_max if max_size is None else max_size,
            command_timeout=settings.database.db_command_timeout_s,
            timeout=settings.database.db_command_timeout_s,
            reset=_reset,
        )
    except asyncpg.InvalidPasswordError:
        raise DatabaseUnreachable(f"{setting}: authentication failed (check user and password)") from None
    except asyncpg.InvalidCatalogNameError:
        raise DatabaseUnreachable(f"{setting}: the database does not exist (create it first)") from None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnreachable(f"{setting}: cannot connect ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:  # asyncpg's DSN parser
        raise DatabaseUnreachable(f"{setting}: not a valid PostgreSQL URL ({exc})") from None
    assert pool is not None
    return pool
