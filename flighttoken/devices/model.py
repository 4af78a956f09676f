from __future__ import annotations

import uuid

import msgspec

from flighttoken.vocabulary import DeviceKind  # defined once there; imported from here too


class Device(msgspec.Struct, frozen=True):
    """The authenticated caller. Locations scope what a touchpoint may do."""

    id: uuid.UUID
    name: str
    kind: DeviceKind
    terminal: str | None = None
    gate: str | None = None
    lounge_id: str | None = None
    airline: str | None = None
