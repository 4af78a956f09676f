"""Which PostgreSQL cluster a connection reached (production mode's key store check)."""

from __future__ import annotations

import asyncpg
import msgspec

from flighttoken.db.connection import Executor, one


class ClusterIdentity(msgspec.Struct, frozen=True):
    address: str | None
    """The server's address and port for this connection; None over a Unix socket."""
    system_identifier: int | None
    """Set once by initdb, the same for every database of the cluster; None if not readable here."""


async def identity(conn: Executor) -> ClusterIdentity:
    row = one(await conn.fetchrow("SELECT host(inet_server_addr()) AS host, inet_server_port() AS port"))
    address = f"{row['host']}:{row['port']}" if row["host"] is not None else None
    try:
        system_identifier = await conn.fetchval("SELECT system_identifier FROM pg_control_system()")
    except asyncpg.InsufficientPrivilegeError:  # some managed services revoke it
        system_identifier = None
    return ClusterIdentity(address, system_identifier)
