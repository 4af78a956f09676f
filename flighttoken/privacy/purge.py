"""Purge after departure (crypto-shredding). Called when a flight departs or is cancelled."""

from __future__ import annotations

from flighttoken.flights.model import Flight
from flighttoken.services import Services


async def on_flight_closed(services: Services, flight: Flight) -> None:
    """The flight departed or was cancelled: forget it in this instance's galleries."""
    await services.galleries.drop_flight(flight.id)
