"""Admin API: tokens (lookup, revoke) for admin and airline_ops keys; devices for admin keys."""

from __future__ import annotations

import uuid

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from flighttoken.admin import devices
from flighttoken.admin.schemas import DeviceKey, DeviceList, DeviceView, NewDevice
from flighttoken.devices.auth import DeviceRequest, allow
from flighttoken.devices.model import DeviceKind
from flighttoken.services import Services
from flighttoken.tokens import lookup, revoke
from flighttoken.tokens.schemas import Revocation, TokenList, TokenView


class TokenController(Controller):
    path = "/v1/tokens"
    tags = ["admin"]
    guards = [allow(DeviceKind.ADMIN, DeviceKind.AIRLINE_OPS)]

    @get("/", summary="Find tokens by booking reference, or by travel document",
         description="Either `booking_reference`, or `document_number` with `issuing_state` (and "
                     "`document_type`, default P). An airline_ops key sees only its airline's tokens.")
    async def lookup(self, services: NamedDependency[Services], request: DeviceRequest,
                     booking_reference: FromQuery[str | None] = None, document_number: FromQuery[str | None] = None,
                     issuing_state: FromQuery[str | None] = None, document_type: FromQuery[str] = "P") -> TokenList:
        found = await lookup.lookup(services, request.user, booking_reference=booking_reference,
                                    document_number=document_number, issuing_state=issuing_state,
                                    document_type=document_type)
        return TokenList(tokens=found)

    @get("/{token_id:uuid}", summary="Read a token")
    async def read(self, token_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                   request: DeviceRequest) -> TokenView:
        return await lookup.get_token(services, request.user, token_id)

    @post("/{token_id:uuid}/revoke", status_code=200,
          summary="Revoke a token: it leaves every gallery and its template is destroyed")
    async def revoke(self, token_id: FromPath[uuid.UUID], data: JSONBody[Revocation],
                     services: NamedDependency[Services], request: DeviceRequest) -> TokenView:
        return await revoke.revoke(services, request.user, token_id, data)


class DeviceController(Controller):
    path = "/v1/devices"
    tags = ["admin"]
    guards = [allow(DeviceKind.ADMIN)]

    @post("/", status_code=HTTP_201_CREATED, summary="Add a device; its API key is shown once")
    async def add(self, data: JSONBody[NewDevice], services: NamedDependency[Services],
                  request: DeviceRequest) -> DeviceKey:
        return await devices.add(services, request.user, data)

    @get("/", summary="List devices")
    async def list_devices(self, services: NamedDependency[Services]) -> DeviceList:
        return DeviceList(devices=await devices.list_devices(services))

    @get("/{device_id:uuid}", summary="Read a device")
    async def read(self, device_id: FromPath[uuid.UUID], services: NamedDependency[Services]) -> DeviceView:
        return await devices.get_device(services, device_id)

    @post("/{device_id:uuid}/disable", status_code=200, summary="Disable a device's key (at once)")
    async def disable(self, device_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                      request: DeviceRequest) -> DeviceView:
        return await devices.disable(services, request.user, device_id)

    @post("/{device_id:uuid}/rotate-key", status_code=200,
          summary="Give a device a new key; the old one stops working at once")
    async def rotate_key(self, device_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                         request: DeviceRequest) -> DeviceKey:
        return await devices.rotate(services, request.user, device_id)
