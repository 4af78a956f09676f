from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from flighttoken.fieldtypes import AwareDatetime
from flighttoken.vocabulary import DecisionReason, FlightState, ManualBoardingReason  # defined there; imported here too

OPEN_STATES = frozenset({FlightState.SCHEDULED, FlightState.BOARDING})
# States after which the passengers' data is due for purge (privacy/purge.py).
FINAL_STATES = frozenset({FlightState.DEPARTED, FlightState.CANCELLED})
# Boarding may pause (back to scheduled). Closing boarding drops the flight's galleries, so a closed
# flight can only depart or be cancelled; departed and cancelled are final.
TRANSITIONS: dict[FlightState, frozenset[FlightState]] = {
    FlightState.SCHEDULED: frozenset({FlightState.BOARDING, FlightState.CANCELLED}),
    FlightState.BOARDING: frozenset({FlightState.SCHEDULED, FlightState.CLOSED, FlightState.DEPARTED,
                                     FlightState.CANCELLED}),
    FlightState.CLOSED: frozenset({FlightState.DEPARTED, FlightState.CANCELLED}),
    FlightState.DEPARTED: frozenset(),
    FlightState.CANCELLED: frozenset(),
}

AirlineCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{2,3}$", examples=["CX"])]
FlightNumber = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,4}[A-Z]?$", examples=["884"])]
AirportCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", examples=["LAX"])]
GateCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{1,8}$", examples=["23"])]
Booked = Annotated[int, msgspec.Meta(ge=0, le=2000, description="passengers expected (booking manifest)")]


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
    booked: int | None = None
    """Passengers expected; None while the airline has sent no manifest."""
    boarding_closed_at: datetime | None = None

    @property
    def code(self) -> str:
        return f"{self.airline}{self.number}"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


class NewFlight(msgspec.Struct, forbid_unknown_fields=True):
    airline: AirlineCode
    number: FlightNumber
    scheduled_departure: AwareDatetime
    destination: AirportCode
    gate: GateCode | None = None
    international: bool = True
    booked: Booked | None = None


class StateChange(msgspec.Struct, forbid_unknown_fields=True):
    state: FlightState


class Delay(msgspec.Struct, forbid_unknown_fields=True):
    """Either the new departure time, or how many minutes later than now scheduled (not both)."""

    scheduled_departure: AwareDatetime | None = None
    minutes: Annotated[int, msgspec.Meta(ge=-720, le=2880)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class GateChange(msgspec.Struct, forbid_unknown_fields=True):
    gate: GateCode


class FlightProgress(msgspec.Struct):
    """How a flight's biometric journey is going. ``expected`` is ``booked``, or ``enrolled`` while
    the airline has sent no passenger count."""

    flight_id: uuid.UUID
    flight: str
    state: FlightState
    gate: str | None
    scheduled_departure: datetime
    destination: str
    booked: int | None
    expected: int
    enrolled: int
    immigration_cleared: int
    in_lounge: int
    boarded: int
    """Every boarded passenger: ``boarded_biometric + boarded_manual``."""
    boarded_biometric: int
    """Boarded by the gate's face decision."""
    boarded_manual: int
    """Boarded by hand by a gate agent (POST /v1/manual-boardings)."""
    boarded_manual_by_reason: dict[ManualBoardingReason, int]
    opted_out: int
    revoked: int
    referred: int
    referred_by_reason: dict[DecisionReason, int]
    late_enrolled: int = 0
    """Of ``enrolled``, those who enrolled late, at an e-Security Gate."""
