"""Airline scoping: an ``airline_ops`` key sees only its own airline's flights and tokens.

Another airline's flight is reported as not found (404), never forbidden (403): a key must not
learn which flights of other airlines exist.
"""

from __future__ import annotations

from flighttoken.devices.model import Device, DeviceKind
from flighttoken.errors import NotFound
from flighttoken.flights.model import Flight


def airline_of(viewer: Device) -> str | None:
    """The airline a key is confined to; None for keys that see every airline (admin).

    An airline_ops key without an airline (which registry refuses to create) sees nothing.
    """
    if viewer.kind is DeviceKind.AIRLINE_OPS:
        return viewer.airline or "-"  # matches no airline code
    return None


def can_see(viewer: Device, airline: str) -> bool:
    scope = airline_of(viewer)
    return scope is None or scope == airline


def flight_not_found() -> NotFound:
    return NotFound("no such flight", code="flight_not_found")


def visible_flight(viewer: Device, flight: Flight | None) -> Flight:
    if flight is None or not can_see(viewer, flight.airline):
        raise flight_not_found()
    return flight
