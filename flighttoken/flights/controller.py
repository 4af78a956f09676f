"""Flights: schedule, state, delays, gate changes, boarding progress and bulk schedule import.

Admin keys see every flight; an airline_ops key only its airline's, and gets 404 for any other.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from flighttoken.devices.auth import DeviceRequest, allow
from flighttoken.devices.model import DeviceKind
from flighttoken.errors import InvalidRequest
from flighttoken.flights import schedule_import, service
from flighttoken.flights.days import calendar_day, ops_day
from flighttoken.flights.model import Delay, Flight, FlightProgress, FlightState, GateChange, NewFlight, StateChange
from flighttoken.services import Services

Moment = Annotated[datetime | None, QueryParameter(description="ISO 8601 with an offset")]


class FlightList(msgspec.Struct):
    start: datetime
    end: datetime
    flights: list[Flight]


class FlightController(Controller):
    path = "/v1/flights"
    tags = ["flights"]
    guards = [allow(DeviceKind.ADMIN, DeviceKind.AIRLINE_OPS)]

    @post("/", status_code=HTTP_201_CREATED, summary="Create a flight")
    async def create(self, data: JSONBody[NewFlight], services: NamedDependency[Services],
                     request: DeviceRequest) -> Flight:
        return await service.create_flight(services, request.user, data)

    @get("/", summary="List flights: today (the ops day) by default, or a local date, or a time range",
         description="`date` (YYYY-MM-DD, the airport's calendar day) or `start` and `end` (at most 8 days). "
                     "Without either: today, widened to include the previous and next six hours.")
    async def list_flights(self, services: NamedDependency[Services], request: DeviceRequest,
                           day: Annotated[date | None, QueryParameter(name="date")] = None,
                           start: Moment = None, end: Moment = None) -> FlightList:
        tz = services.settings.operations.ops_timezone
        if day is not None and (start or end):
            raise InvalidRequest("give either date or start and end", code="invalid_range")
        if day is not None:
            start, end = calendar_day(tz, day)
        elif start is None and end is None:
            start, end = ops_day(tz, datetime.now(UTC))
        elif start is None or end is None:
            raise InvalidRequest("give both start and end", code="invalid_range")
        if start.tzinfo is None or end.tzinfo is None:
            raise InvalidRequest("start and end need a UTC offset", code="invalid_range")
        return FlightList(start=start, end=end, flights=await service.list_flights(services, request.user, start, end))

    @post("/import", status_code=HTTP_201_CREATED, request_max_body_size=8 * 1024 * 1024,
          summary="Import a schedule (text/csv or application/json): every flight, or none",
          description="CSV header: airline,number,scheduled_departure,destination[,gate,international,booked]. "
                      "JSON: an array of the same fields. Any bad line: 422 `schedule_invalid` with "
                      "`errors: [{line, field, message}]` and nothing imported.")
    async def import_schedule(self, services: NamedDependency[Services],
                              request: DeviceRequest) -> schedule_import.ImportResult:
        return await schedule_import.import_schedule(services, request.user, await request.body(),
                                                     request.headers.get("content-type", ""))

    @get("/{flight_id:uuid}", summary="Read a flight")
    async def read(self, flight_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                   request: DeviceRequest) -> Flight:
        return await service.get_flight(services, flight_id, request.user)

    @get("/{flight_id:uuid}/progress",
         summary="Boarding progress: enrolled, cleared, in lounge, boarded, referred by reason, opted out")
    async def progress(self, flight_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                       request: DeviceRequest) -> FlightProgress:
        return await service.progress(services, request.user, flight_id)

    @post("/{flight_id:uuid}/state", status_code=200,
          summary="Move a flight: scheduled ⇄ boarding → closed → departed, or cancelled")
    async def change_state(self, flight_id: FromPath[uuid.UUID], data: JSONBody[StateChange],
                           services: NamedDependency[Services], request: DeviceRequest) -> Flight:
        return await service.change_state(services, request.user, flight_id, data.state)

    @post("/{flight_id:uuid}/boarding", status_code=200, summary="Start boarding")
    async def start_boarding(self, flight_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                             request: DeviceRequest) -> Flight:
        return await service.change_state(services, request.user, flight_id, FlightState.BOARDING)

    @post("/{flight_id:uuid}/close", status_code=200, summary="Close boarding (gates stop boarding it)")
    async def close(self, flight_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                    request: DeviceRequest) -> Flight:
        return await service.change_state(services, request.user, flight_id, FlightState.CLOSED)

    @post("/{flight_id:uuid}/depart", status_code=200, summary="Mark the flight departed")
    async def depart(self, flight_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                     request: DeviceRequest) -> Flight:
        return await service.change_state(services, request.user, flight_id, FlightState.DEPARTED)

    @post("/{flight_id:uuid}/cancel", status_code=200, summary="Cancel the flight")
    async def cancel(self, flight_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                     request: DeviceRequest) -> Flight:
        return await service.change_state(services, request.user, flight_id, FlightState.CANCELLED)

    @post("/{flight_id:uuid}/delay", status_code=200,
          summary="Delay (or bring forward) the departure; tokens follow it to its new departure window")
    async def delay(self, flight_id: FromPath[uuid.UUID], data: JSONBody[Delay], services: NamedDependency[Services],
                    request: DeviceRequest) -> Flight:
        return await service.delay(services, request.user, flight_id, data)

    @post("/{flight_id:uuid}/gate", status_code=200, summary="Change the gate; gates follow at once")
    async def change_gate(self, flight_id: FromPath[uuid.UUID], data: JSONBody[GateChange],
                          services: NamedDependency[Services], request: DeviceRequest) -> Flight:
        return await service.change_gate(services, request.user, flight_id, data.gate)
