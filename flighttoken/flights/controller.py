from __future__ import annotations

import uuid

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from flighttoken.devices.auth import DeviceRequest, allow
from flighttoken.devices.model import DeviceKind
from flighttoken.flights import service
from flighttoken.flights.model import Flight, NewFlight, StateChange
from flighttoken.services import Services


class FlightController(Controller):
    path = "/v1/flights"
    tags = ["flights"]
    guards = [allow(DeviceKind.ADMIN)]

    @post("/", status_code=HTTP_201_CREATED, summary="Create a flight")
    async def create(self, data: JSONBody[NewFlight], services: NamedDependency[Services],
                     request: DeviceRequest) -> Flight:
        return await service.create_flight(services, request.user, data)

    @get("/{flight_id:uuid}", summary="Read a flight")
    async def read(self, flight_id: FromPath[uuid.UUID], services: NamedDependency[Services]) -> Flight:
        return await service.get_flight(services, flight_id)

    @post("/{flight_id:uuid}/state", status_code=200,
          summary="Move a flight: scheduled → boarding → departed, or cancelled")
    async def change_state(self, flight_id: FromPath[uuid.UUID], data: JSONBody[StateChange],
                           services: NamedDependency[Services], request: DeviceRequest) -> Flight:
        return await service.change_state(services, request.user, flight_id, data.state)
