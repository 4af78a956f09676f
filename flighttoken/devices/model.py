from __future__ import annotations

import enum
import uuid

import msgspec


class DeviceKind(enum.StrEnum):
    KIOSK = "kiosk"
    E_CHANNEL = "e_channel"
    LOUNGE = "lounge"
    GATE = "gate"
    ADMIN = "admin"
    AIRLINE_OPS = "airline_ops"
    AUTHORITY = "authority"


TOUCHPOINT_KINDS = frozenset({DeviceKind.E_CHANNEL, DeviceKind.LOUNGE, DeviceKind.GATE})


class Device(msgspec.Struct, frozen=True):
    """The authenticated caller. Locations scope what a touchpoint may do."""

    id: uuid.UUID
    name: str
    kind: DeviceKind
    terminal: str | None = None
    gate: str | None = None
    lounge_id: str | None = None
    airline: str | None = None
