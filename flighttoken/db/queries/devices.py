from __future__ import annotations

import uuid

import asyncpg

from flighttoken.db.connection import Connection, Executor
from flighttoken.devices.model import Device, DeviceKind

_COLUMNS = "id, name, kind, terminal, gate, lounge_id, airline"


def _device(row: asyncpg.Record) -> Device:
    return Device(id=row["id"], name=row["name"], kind=DeviceKind(row["kind"]), terminal=row["terminal"],
                  gate=row["gate"], lounge_id=row["lounge_id"], airline=row["airline"])


async def insert(conn: Connection, device: Device, key_hash: bytes) -> None:
    await conn.execute(
        "INSERT INTO devices (id, name, kind, terminal, gate, lounge_id, airline, key_hash)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        device.id, device.name, device.kind.value, device.terminal, device.gate, device.lounge_id,
        device.airline, key_hash,
    )


async def by_key_hash(conn: Executor, key_hash: bytes) -> Device | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM devices WHERE key_hash = $1 AND disabled_at IS NULL", key_hash)
    return _device(row) if row else None


async def by_id(conn: Executor, device_id: uuid.UUID) -> Device | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM devices WHERE id = $1", device_id)
    return _device(row) if row else None


async def by_name(conn: Executor, name: str) -> Device | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM devices WHERE name = $1 AND disabled_at IS NULL", name)
    return _device(row) if row else None


async def set_key_hash(conn: Executor, device_id: uuid.UUID, key_hash: bytes) -> None:
    await conn.execute("UPDATE devices SET key_hash = $2, disabled_at = NULL WHERE id = $1", device_id, key_hash)


async def with_status(conn: Executor, device_id: uuid.UUID) -> asyncpg.Record | None:
    """The device's columns (never its key hash) with created_at and disabled_at."""
    return await conn.fetchrow(f"SELECT {_COLUMNS}, created_at, disabled_at FROM devices WHERE id = $1", device_id)


async def list_with_status(conn: Executor) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {_COLUMNS}, created_at, disabled_at FROM devices ORDER BY kind, name")


async def disable(conn: Executor, device_id: uuid.UUID) -> None:
    await conn.execute("UPDATE devices SET disabled_at = now() WHERE id = $1 AND disabled_at IS NULL", device_id)
