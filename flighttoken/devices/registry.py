"""Creating devices (CLI, demo set-up, admin API)."""

from __future__ import annotations

import uuid

from flighttoken.db.connection import Connection
from flighttoken.db.queries import devices as q
from flighttoken.devices.keys import hash_api_key, new_api_key
from flighttoken.devices.model import Device, DeviceKind
from flighttoken.errors import InvalidRequest


def validate_location(kind: DeviceKind, gate: str | None, lounge_id: str | None, airline: str | None) -> None:
    if kind is DeviceKind.GATE and not gate:
        raise InvalidRequest("a gate reader needs the gate it stands at", code="gate_required")
    if kind is DeviceKind.LOUNGE and not lounge_id:
        raise InvalidRequest("a lounge reader needs its lounge id", code="lounge_required")
    if kind is DeviceKind.AIRLINE_OPS and not airline:
        raise InvalidRequest("an airline_ops key needs its airline", code="airline_required")


async def add_device(conn: Connection, *, name: str, kind: DeviceKind, terminal: str | None = None,
                     gate: str | None = None, lounge_id: str | None = None,
                     airline: str | None = None) -> tuple[Device, str]:
    """Create a device and return it with its API key (shown once, stored only hashed)."""
    validate_location(kind, gate, lounge_id, airline)
    device = Device(id=uuid.uuid4(), name=name, kind=kind, terminal=terminal, gate=gate, lounge_id=lounge_id,
                    airline=airline.upper() if airline else None)
    key = new_api_key()
    await q.insert(conn, device, hash_api_key(key))
    return device, key


async def rotate_key(conn: Connection, device: Device) -> str:
    key = new_api_key()
    await q.set_key_hash(conn, device.id, hash_api_key(key))
    return key


# The devices `make run` creates so a newcomer can try every touchpoint at once.
DEMO_DEVICES: tuple[dict[str, str], ...] = (
    {"name": "demo-admin", "kind": DeviceKind.ADMIN},
    {"name": "demo-kiosk", "kind": DeviceKind.KIOSK, "terminal": "T1"},
    {"name": "demo-bag-drop", "kind": DeviceKind.BAG_DROP, "terminal": "T1"},
    {"name": "demo-e-security-gate", "kind": DeviceKind.E_SECURITY_GATE, "terminal": "T1"},
    {"name": "demo-e-channel", "kind": DeviceKind.E_CHANNEL, "terminal": "T1"},
    {"name": "demo-lounge", "kind": DeviceKind.LOUNGE, "terminal": "T1", "lounge_id": "L1"},
    {"name": "demo-gate-23", "kind": DeviceKind.GATE, "terminal": "T1", "gate": "23"},
)


async def seed_demo_devices(conn: Connection) -> list[tuple[Device, str]]:
    """Create the demo devices, or give existing ones fresh keys (keys are only ever shown once)."""
    out = []
    for spec in DEMO_DEVICES:
        existing = await q.by_name(conn, spec["name"])
        if existing is not None:
            out.append((existing, await rotate_key(conn, existing)))
        else:
            out.append(await add_device(conn, name=spec["name"], kind=DeviceKind(spec["kind"]),
                                        terminal=spec.get("terminal"), gate=spec.get("gate"),
                                        lounge_id=spec.get("lounge_id")))
    return out
