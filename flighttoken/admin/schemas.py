"""Bodies of the admin API for devices (token bodies: ``flighttoken/tokens/schemas.py``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from flighttoken.flights.model import AirlineCode, GateCode
from flighttoken.vocabulary import DeviceKind

Label = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9 ._-]{1,64}$")]


class NewDevice(msgspec.Struct, forbid_unknown_fields=True):
    name: Label
    kind: DeviceKind
    terminal: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{1,8}$")] | None = None
    gate: GateCode | None = None
    lounge_id: Label | None = None
    airline: AirlineCode | None = None


class DeviceView(msgspec.Struct):
    id: uuid.UUID
    name: str
    kind: DeviceKind
    terminal: str | None
    gate: str | None
    lounge_id: str | None
    airline: str | None
    created_at: datetime
    disabled_at: datetime | None


class DeviceList(msgspec.Struct):
    devices: list[DeviceView]


class DeviceKey(msgspec.Struct):
    device: DeviceView
    api_key: str
    """Shown once: only its SHA-256 digest is stored."""
