"""DCS admin API: each airline's webhook (admin keys set it; an airline_ops key reads its own, never
the secret) and the dead letters (listed, and re-driven by admin keys)."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from flighttoken.dcs import webhooks
from flighttoken.dcs.schemas import DeadLetterList, WebhookConfig, WebhookView
from flighttoken.devices.auth import DeviceRequest, allow
from flighttoken.devices.model import DeviceKind
from flighttoken.services import Services


class WebhookController(Controller):
    path = "/v1/airlines/{airline:str}/webhook"
    tags = ["dcs"]
    guards = [allow(DeviceKind.ADMIN, DeviceKind.AIRLINE_OPS)]

    @put("/", status_code=200, guards=[allow(DeviceKind.ADMIN)],
         summary="Set the airline's DCS webhook; a new one (or rotate_secret) returns its secret once")
    async def put_webhook(self, airline: FromPath[str], data: JSONBody[WebhookConfig],
                          services: NamedDependency[Services], request: DeviceRequest) -> WebhookView:
        return await webhooks.put(services, request.user, airline, data)

    @get("/", summary="Read the airline's DCS webhook (never its secret)",
         description="An airline_ops key reads only its own airline's; any other is 404 webhook_not_found.")
    async def get_webhook(self, airline: FromPath[str], services: NamedDependency[Services],
                          request: DeviceRequest) -> WebhookView:
        return await webhooks.get(services, request.user, airline)

    @delete("/", status_code=204, guards=[allow(DeviceKind.ADMIN)], summary="Remove the airline's DCS webhook")
    async def delete_webhook(self, airline: FromPath[str], services: NamedDependency[Services],
                             request: DeviceRequest) -> None:
        await webhooks.delete(services, request.user, airline)


class DeadLetterController(Controller):
    path = "/v1/dcs/dead-letters"
    tags = ["dcs"]
    guards = [allow(DeviceKind.ADMIN, DeviceKind.AIRLINE_OPS)]

    @get("/", summary="Events not delivered after every attempt, newest first",
         description="An airline_ops key sees only its own airline's.")
    async def list_dead(self, services: NamedDependency[Services], request: DeviceRequest,
                        airline: FromQuery[str | None] = None, limit: FromQuery[int] = 100) -> DeadLetterList:
        return DeadLetterList(events=await webhooks.dead_letters(services, request.user, airline, limit))

    @post("/{event_id:uuid}/redrive", status_code=204, guards=[allow(DeviceKind.ADMIN)],
          summary="Deliver a dead-lettered event again (same event id, a fresh set of attempts)")
    async def redrive(self, event_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                      request: DeviceRequest) -> None:
        await webhooks.redrive(services, request.user, event_id)
