"""Creating flights, moving them through their states, delays, gate changes and boarding progress.

Every change is audited. An airline_ops key acts only on its own airline's flights: any other
flight is "not found" (see flights/scope.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import structlog

from flighttoken.db.queries import audit
from flighttoken.db.queries import flights as q
from flighttoken.db.queries import operations as ops_q
from flighttoken.dcs import outbox
from flighttoken.devices.model import Device
from flighttoken.errors import Conflict, Forbidden, InvalidRequest
from flighttoken.flights.model import (
    FINAL_STATES,
    TRANSITIONS,
    Delay,
    Flight,
    FlightProgress,
    FlightState,
    NewFlight,
)
from flighttoken.flights.scope import airline_of, can_see, flight_not_found, visible_flight
from flighttoken.flights.windows import window_start
from flighttoken.privacy.purge import on_flight_closed
from flighttoken.services import Services
from flighttoken.sync.events import publish

log = structlog.get_logger(__name__)
# A list may span at most this much: enough for a week's schedule, bounded for the database.
MAX_LIST_SPAN = timedelta(days=8)


def actor_of(device: Device) -> str:
    return f"device:{device.id}"


# Airline schedules are published about a season (under a year) ahead. Bounding departures keeps
# every date computed from them (windows, purge deadlines, the ops day) far from the calendar's end:
# a flight at 9999-12-31T23:59Z made GET /v1/ops/summary overflow (found by the widened fuzzing).
SCHEDULE_SPAN = timedelta(days=400)


def check_departure(when: datetime) -> None:
    if abs(when - datetime.now(UTC)) > SCHEDULE_SPAN:
        raise InvalidRequest(f"a departure must be within {SCHEDULE_SPAN.days} days of now",
                             code="departure_out_of_range")


def new_flight(services: Services, new: NewFlight) -> Flight:
    check_departure(new.scheduled_departure)
    return Flight(id=uuid.uuid4(), airline=new.airline, number=new.number,
                  scheduled_departure=new.scheduled_departure,
                  window_start=window_start(new.scheduled_departure, services.settings.galleries.window_seconds),
                  destination=new.destination, international=new.international, state=FlightState.SCHEDULED,
                  gate=new.gate, booked=new.booked)


def check_may_create(actor: Device, airline: str) -> None:
    if not can_see(actor, airline):
        raise Forbidden(f"this key serves {actor.airline} and may not create {airline} flights",
                        code="airline_mismatch")


async def create_flight(services: Services, actor: Device, new: NewFlight) -> Flight:
    check_may_create(actor, new.airline)
    flight = new_flight(services, new)
    async with services.db().acquire() as conn, conn.transaction():
        if not await q.insert(conn, flight):
            raise Conflict(f"flight {flight.code} at {flight.scheduled_departure.isoformat()} already exists",
                           code="flight_exists")
        await services.vault.create_flight_key(conn, flight.id)
        await audit.record(conn, actor=actor_of(actor), action="flight.create", outcome="ok",
                           flight_id=flight.id, detail={"flight": flight.code})
    return flight


async def get_flight(services: Services, flight_id: uuid.UUID, viewer: Device | None = None) -> Flight:
    """The flight; "not found" too when ``viewer`` is an airline_ops key of another airline."""
    flight = await q.by_id(services.db(), flight_id)
    if flight is None or (viewer is not None and not can_see(viewer, flight.airline)):
        raise flight_not_found()
    return flight


async def list_flights(services: Services, viewer: Device, start: datetime, end: datetime) -> list[Flight]:
    if end < start:
        raise InvalidRequest("'end' is before 'start'", code="invalid_range")
    if end - start > MAX_LIST_SPAN:
        raise InvalidRequest(f"list at most {MAX_LIST_SPAN.days} days at once", code="invalid_range")
    return await q.list_between(services.db(), start, end, airline_of(viewer))


async def change_state(services: Services, actor: Device, flight_id: uuid.UUID, target: FlightState) -> Flight:
    async with services.db().acquire() as conn, conn.transaction():
        flight = visible_flight(actor, await q.by_id(conn, flight_id, for_update=True))
        if target == flight.state:
            return flight
        if target not in TRANSITIONS[flight.state]:
            raise Conflict(f"a {flight.state.value} flight cannot become {target.value}", code="invalid_transition")
        boarding_ended = flight.state is FlightState.BOARDING and target in (FlightState.CLOSED, FlightState.DEPARTED)
        flight = await q.set_state(conn, flight_id, target)
        if boarding_ended:  # the airline's DCS gets the not-boarded list, committed with the close
            await outbox.enqueue_boarding_closed(conn, flight_id, target.value)
        await audit.record(conn, actor=actor_of(actor), action=f"flight.{target.value}", outcome="ok",
                           flight_id=flight_id, detail={"flight": flight.code})
        if not flight.is_open:
            await publish(conn, services.instance_id, "flight_closed", flight_id=flight_id)
    if flight.state in FINAL_STATES:
        log.info("flight_closed", flight=flight.code, state=flight.state.value)
        await on_flight_closed(services, flight)
    elif flight.state is FlightState.CLOSED:
        # Nobody boards a closed flight any more; its data stays until departure (then the purge).
        dropped = await services.galleries.drop_flight(flight.id)
        log.info("boarding_closed", flight=flight.code, tokens_dropped=dropped)
    return flight


async def delay(services: Services, actor: Device, flight_id: uuid.UUID, change: Delay) -> Flight:
    if (change.scheduled_departure is None) == (change.minutes is None):
        raise InvalidRequest("give either the new scheduled_departure or minutes, not both", code="invalid_delay")
    async with services.db().acquire() as conn, conn.transaction():
        before = visible_flight(actor, await q.by_id(conn, flight_id, for_update=True))
        if not before.is_open:
            raise Conflict(f"flight {before.code} has {before.state.value}", code="flight_closed")
        departure = change.scheduled_departure or before.scheduled_departure + timedelta(minutes=change.minutes or 0)
        check_departure(departure)
        window = window_start(departure, services.settings.galleries.window_seconds)
        after = await q.set_departure(conn, flight_id, departure, window)
        if after is None:
            raise Conflict(f"flight {before.code} at {departure.isoformat()} already exists", code="flight_exists")
        await audit.record(conn, actor=actor_of(actor), action="flight.delay", outcome="ok", flight_id=flight_id,
                           detail={"flight": before.code, "from": before.scheduled_departure.isoformat(),
                                   "to": after.scheduled_departure.isoformat(), "reason": change.reason})
        if after.window_start != before.window_start:
            await publish(conn, services.instance_id, "flight_moved", flight_id=flight_id)
    if after.window_start != before.window_start:
        # E-channels and lounges search by departure window: the tokens must follow the flight.
        moved = await services.galleries.move_flight_window(flight_id, after.window_start)
        log.info("flight_window_moved", flight=after.code, tokens=moved)
    return after


async def change_gate(services: Services, actor: Device, flight_id: uuid.UUID, gate: str) -> Flight:
    async with services.db().acquire() as conn, conn.transaction():
        before = visible_flight(actor, await q.by_id(conn, flight_id, for_update=True))
        if not before.is_open:
            raise Conflict(f"flight {before.code} has {before.state.value}", code="flight_closed")
        if before.gate == gate:
            return before
        # Gates look up the flights boarding at them on every request: the database row is the switch.
        after = await q.set_gate(conn, flight_id, gate)
        await audit.record(conn, actor=actor_of(actor), action="flight.gate_change", outcome="ok",
                           flight_id=flight_id, detail={"flight": before.code, "from": before.gate, "to": gate})
    return after


async def progress_of(services: Services, flights: list[Flight]) -> list[FlightProgress]:
    ids = [f.id for f in flights]
    pool = services.db()
    counts = await ops_q.progress(pool, ids)
    refers = await ops_q.refer_reasons(pool, ids)
    manual = await ops_q.manual_boarding_reasons(pool, ids)
    out = []
    for f in flights:
        c = counts[f.id]
        out.append(FlightProgress(
            flight_id=f.id, flight=f.code, state=f.state, gate=f.gate, scheduled_departure=f.scheduled_departure,
            destination=f.destination, booked=f.booked,
            expected=f.booked if f.booked is not None else c["enrolled"], enrolled=c["enrolled"],
            immigration_cleared=c["immigration_cleared"], in_lounge=c["in_lounge"], boarded=c["boarded"],
            boarded_biometric=c["boarded"] - c["boarded_manual"], boarded_manual=c["boarded_manual"],
            boarded_manual_by_reason=dict(sorted(manual[f.id].items())),
            opted_out=c["opted_out"], revoked=c["revoked"], referred=sum(refers[f.id].values()),
            late_enrolled=c["late_enrolled"],
            referred_by_reason=dict(sorted(refers[f.id].items(), key=lambda kv: (-kv[1], kv[0])))))
    return out


async def progress(services: Services, viewer: Device, flight_id: uuid.UUID) -> FlightProgress:
    flight = await get_flight(services, flight_id, viewer)
    return (await progress_of(services, [flight]))[0]
