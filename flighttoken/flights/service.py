"""Creating flights and moving them through their states."""

from __future__ import annotations

import uuid

import structlog

from flighttoken.db.queries import audit
from flighttoken.db.queries import flights as q
from flighttoken.devices.model import Device
from flighttoken.errors import Conflict, NotFound
from flighttoken.flights.model import TRANSITIONS, Flight, FlightState, NewFlight
from flighttoken.flights.windows import window_start
from flighttoken.privacy.purge import on_flight_closed
from flighttoken.services import Services
from flighttoken.sync.events import publish

log = structlog.get_logger(__name__)


async def create_flight(services: Services, actor: Device, new: NewFlight) -> Flight:
    flight = Flight(id=uuid.uuid4(), airline=new.airline, number=new.number,
                    scheduled_departure=new.scheduled_departure,
                    window_start=window_start(new.scheduled_departure, services.settings.window_seconds),
                    destination=new.destination, international=new.international, state=FlightState.SCHEDULED,
                    gate=new.gate)
    async with services.db().acquire() as conn, conn.transaction():
        if not await q.insert(conn, flight):
            raise Conflict(f"flight {flight.code} at {flight.scheduled_departure.isoformat()} already exists",
                           code="flight_exists")
        await services.vault.create_flight_key(conn, flight.id)
        await audit.record(conn, actor=f"device:{actor.id}", action="flight.create", outcome="ok",
                           flight_id=flight.id, detail={"flight": flight.code})
    return flight


async def get_flight(services: Services, flight_id: uuid.UUID) -> Flight:
    flight = await q.by_id(services.db(), flight_id)
    if flight is None:
        raise NotFound("no such flight", code="flight_not_found")
    return flight


async def change_state(services: Services, actor: Device, flight_id: uuid.UUID, target: FlightState) -> Flight:
    async with services.db().acquire() as conn, conn.transaction():
        flight = await q.by_id(conn, flight_id, for_update=True)
        if flight is None:
            raise NotFound("no such flight", code="flight_not_found")
        if target == flight.state:
            return flight
        if target not in TRANSITIONS[flight.state]:
            raise Conflict(f"a {flight.state.value} flight cannot become {target.value}", code="invalid_transition")
        flight = await q.set_state(conn, flight_id, target)
        await audit.record(conn, actor=f"device:{actor.id}", action=f"flight.{target.value}", outcome="ok",
                           flight_id=flight_id, detail={"flight": flight.code})
        if not flight.is_open:
            await publish(conn, services.instance_id, "flight_closed", flight_id=flight_id)
    if not flight.is_open:
        log.info("flight_closed", flight=flight.code, state=flight.state.value)
        await on_flight_closed(services, flight)
    return flight
