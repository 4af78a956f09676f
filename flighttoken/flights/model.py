from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated

import msgspec


class FlightState(enum.StrEnum):
    SCHEDULED = "scheduled"
    BOARDING = "boarding"
    DEPARTED = "departed"
    CANCELLED = "cancelled"


OPEN_STATES = frozenset({FlightState.SCHEDULED, FlightState.BOARDING})
# Boarding may pause (back to scheduled); departed and cancelled are final.
TRANSITIONS: dict[FlightState, frozenset[FlightState]] = {
    FlightState.SCHEDULED: frozenset({FlightState.BOARDING, FlightState.CANCELLED}),
    FlightState.BOARDING: frozenset({FlightState.SCHEDULED, FlightState.DEPARTED, FlightState.CANCELLED}),
    FlightState.DEPARTED: frozenset(),
    FlightState.CANCELLED: frozenset(),
}

AirlineCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{2,3}$", examples=["CX"])]
FlightNumber = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,4}[A-Z]?$", examples=["884"])]
AirportCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", examples=["LAX"])]
GateCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{1,8}$", examples=["23"])]


class Flight(msgspec.Struct, frozen=True):
    id: uuid.UUID
    airline: str
    number: str
    scheduled_departure: datetime
    window_start: datetime
    destination: str
    international: bool
    state: FlightState
    gate: str | None = None

    @property
    def code(self) -> str:
        return f"{self.airline}{self.number}"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


class NewFlight(msgspec.Struct, forbid_unknown_fields=True):
    airline: AirlineCode
    number: FlightNumber
    scheduled_departure: Annotated[datetime, msgspec.Meta(tz=True)]
    destination: AirportCode
    gate: GateCode | None = None
    international: bool = True


class StateChange(msgspec.Struct, forbid_unknown_fields=True):
    state: FlightState
