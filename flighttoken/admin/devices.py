"""Device keys over the API: add, list, disable, rotate. Admin keys only.

A disabled or rotated key stops working at once: on this instance its cache entries go and its
alert streams end after the commit; the ``device_changed`` sync event (sent at commit) does the same
on every other instance within milliseconds, and the key cache's few seconds bound a missed event.
"""

from __future__ import annotations

import uuid

import asyncpg
import structlog

from flighttoken.admin.schemas import DeviceKey, DeviceView, NewDevice
from flighttoken.db.connection import Connection, one
from flighttoken.db.queries import audit
from flighttoken.db.queries import devices as q
from flighttoken.devices.model import Device, DeviceKind
from flighttoken.devices.registry import add_device, rotate_key
from flighttoken.errors import Conflict, NotFound
from flighttoken.flights.service import actor_of
from flighttoken.services import Services
from flighttoken.sync import events

log = structlog.get_logger(__name__)


def _view(row: asyncpg.Record) -> DeviceView:
    return DeviceView(id=row["id"], name=row["name"], kind=DeviceKind(row["kind"]), terminal=row["terminal"],
                      gate=row["gate"], lounge_id=row["lounge_id"], airline=row["airline"],
                      created_at=row["created_at"], disabled_at=row["disabled_at"])


async def _existing(conn: Connection, device_id: uuid.UUID) -> asyncpg.Record:
    row = await q.with_status(conn, device_id)
    if row is None:
        raise NotFound("no such device", code="device_not_found")
    return row


async def add(services: Services, actor: Device, new: NewDevice) -> DeviceKey:
    async with services.db().acquire() as conn, conn.transaction():
        if await q.by_name(conn, new.name) is not None:
            raise Conflict(f"an active device is already named {new.name!r}", code="device_exists")
        device, key = await add_device(conn, name=new.name, kind=new.kind, terminal=new.terminal, gate=new.gate,
                                       lounge_id=new.lounge_id, airline=new.airline)
        await audit.record(conn, actor=actor_of(actor), action="device.add", outcome="ok",
                           detail={"device": str(device.id), "name": device.name, "kind": device.kind.value})
        row = one(await q.with_status(conn, device.id))  # the device just added
    log.info("device_added", device=str(device.id), kind=device.kind.value)
    return DeviceKey(device=_view(row), api_key=key)


async def list_devices(services: Services) -> list[DeviceView]:
    return [_view(r) for r in await q.list_with_status(services.db())]


async def get_device(services: Services, device_id: uuid.UUID) -> DeviceView:
    async with services.db().acquire() as conn:
        return _view(await _existing(conn, device_id))


async def disable(services: Services, actor: Device, device_id: uuid.UUID) -> DeviceView:
    if device_id == actor.id:
        raise Conflict("a key cannot disable itself (use another admin key)", code="cannot_disable_self")
    async with services.db().acquire() as conn, conn.transaction():
        row = await _existing(conn, device_id)
        if row["disabled_at"] is None:
            await q.disable(conn, device_id)
            await audit.record(conn, actor=actor_of(actor), action="device.disable", outcome="ok",
                               detail={"device": str(device_id), "name": row["name"]})
            await events.publish(conn, services.instance_id, "device_changed",
                                 payload={"device_id": str(device_id)})
            row = one(await q.with_status(conn, device_id))  # _existing found it
    services.key_cache.clear()
    services.device_changed(device_id)
    return _view(row)


async def rotate(services: Services, actor: Device, device_id: uuid.UUID) -> DeviceKey:
    async with services.db().acquire() as conn, conn.transaction():
        row = await _existing(conn, device_id)
        if row["disabled_at"] is not None:
            raise Conflict("the device is disabled; add a new device instead", code="device_disabled")
        device = await q.by_id(conn, device_id)
        assert device is not None  # _existing found it
        key = await rotate_key(conn, device)
        await audit.record(conn, actor=actor_of(actor), action="device.rotate_key", outcome="ok",
                           detail={"device": str(device_id), "name": row["name"]})
        await events.publish(conn, services.instance_id, "device_changed", payload={"device_id": str(device_id)})
    services.key_cache.clear()
    services.device_changed(device_id)
    return DeviceKey(device=_view(row), api_key=key)
