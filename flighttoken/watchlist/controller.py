"""HTTP API: /v1/watchlist and /v1/alerts (authority keys only), and staff holds on tokens.

The watchlist and alert controllers are served only by the authority's listener
(``flighttoken.app.create_authority_app``); the public app does not have them at all. There too
they answer every other key with the router's own 404. Staff holds are on the public app.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import ServerSentEvent

from flighttoken.devices.auth import HIDDEN_ROUTE, DeviceRequest, allow
from flighttoken.devices.model import DeviceKind
from flighttoken.errors import InvalidRequest
from flighttoken.services import Services
from flighttoken.tokens import holds
from flighttoken.tokens.schemas import HoldState, StaffHold, StaffHoldView
from flighttoken.watchlist import alerts, service
from flighttoken.watchlist.guards import authority_only
from flighttoken.watchlist.schemas import (
    Alert,
    AlertPage,
    EnrolledSubject,
    NewSubject,
    Removal,
    Resolution,
    Subject,
    SubjectPage,
)

Limit = Annotated[int, QueryParameter(ge=1, le=500)]
Offset = Annotated[int, QueryParameter(ge=0)]
MAX_ALERT_ID = 2**63 - 1  # alerts.id is a bigint


class WatchlistController(Controller):
    path = "/v1/watchlist"
    tags = ["watchlist"]
    guards = [authority_only]
    opt = {HIDDEN_ROUTE: True}
    include_in_schema = False

    @post("/subjects", status_code=201, request_max_body_size=32 * 1024 * 1024,
          summary="Put a subject on the watchlist from one to five photos")
    async def enrol(self, data: JSONBody[NewSubject], services: NamedDependency[Services],
                    request: DeviceRequest) -> EnrolledSubject:
        return await service.enrol(services, request.user, data)

    @get("/subjects", summary="List subjects (never their templates)")
    async def list_subjects(self, services: NamedDependency[Services],
                            status: Annotated[Literal["active", "expired", "removed", "all"],
                                              QueryParameter()] = "active",
                            limit: Limit = 100, offset: Offset = 0) -> SubjectPage:
        found = await service.list_subjects(services, status, limit, offset)
        return SubjectPage(subjects=found, limit=limit, offset=offset)

    @get("/subjects/{subject_id:uuid}", summary="Read a subject")
    async def read(self, subject_id: FromPath[uuid.UUID], services: NamedDependency[Services]) -> Subject:
        return await service.get(services, subject_id)

    @post("/subjects/{subject_id:uuid}/remove", status_code=200,
          summary="Take a subject off the watchlist; its templates are deleted at once")
    async def remove(self, subject_id: FromPath[uuid.UUID], data: JSONBody[Removal],
                     services: NamedDependency[Services], request: DeviceRequest) -> Subject:
        await service.remove(services, request.user, subject_id, data.removed_by)
        return await service.get(services, subject_id)


class AlertController(Controller):
    path = "/v1/alerts"
    tags = ["watchlist"]
    guards = [authority_only]
    opt = {HIDDEN_ROUTE: True}
    include_in_schema = False

    @get("/", summary="List alerts, oldest first, from after the given id")
    async def list_alerts(self, services: NamedDependency[Services],
                          status: Annotated[Literal["open", "resolved", "all"], QueryParameter()] = "open",
                          limit: Limit = 100, after: Offset = 0) -> AlertPage:
        found = await alerts.list_alerts(services, status, limit, after)
        return AlertPage(alerts=found, next_after=found[-1].id if found else after)

    @get("/stream", summary="Server-sent events: every new alert as it is raised",
         description="`event: alert`, `id: <alert id>`, data the alert JSON. Send `Last-Event-ID` on reconnect "
                     "to receive the alerts raised meanwhile.")
    async def stream(self, services: NamedDependency[Services], request: DeviceRequest) -> ServerSentEvent:
        header = request.headers.get("last-event-id")
        last = None
        if header:
            if not header.isdigit() or int(header) > MAX_ALERT_ID:
                raise InvalidRequest("Last-Event-ID must be an alert id", code="invalid_last_event_id")
            last = int(header)
        return ServerSentEvent(alerts.stream(services, request.user, last))

    @get("/{alert_id:int}", summary="Read an alert")
    async def read(self, alert_id: FromPath[int], services: NamedDependency[Services]) -> Alert:
        return await alerts.get(services, alert_id)

    @post("/{alert_id:int}/resolve", status_code=200,
          summary="Resolve an alert: confirmed keeps the token on hold, false_alarm releases it")
    async def resolve(self, alert_id: FromPath[int], data: JSONBody[Resolution], services: NamedDependency[Services],
                      request: DeviceRequest) -> Alert:
        return await alerts.resolve(services, request.user, alert_id, data)


class StaffHoldController(Controller):
    path = "/v1/tokens/{token_id:uuid}/hold"
    tags = ["admin"]
    guards = [allow(DeviceKind.ADMIN, DeviceKind.AIRLINE_OPS)]

    @get("/", summary="The staff hold in force on this token, if any (reason, who placed it, when)")
    async def read(self, token_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                   request: DeviceRequest) -> StaffHoldView:
        return await holds.read(services, request.user, token_id)

    @put("/", status_code=200, summary="Hold a token: every touchpoint refers it (see_officer)")
    async def place(self, token_id: FromPath[uuid.UUID], data: JSONBody[StaffHold],
                    services: NamedDependency[Services], request: DeviceRequest) -> HoldState:
        return await holds.place(services, request.user, token_id, data.reason)

    @delete("/", status_code=200, summary="Release this staff hold")
    async def release(self, token_id: FromPath[uuid.UUID], services: NamedDependency[Services],
                      request: DeviceRequest) -> HoldState:
        return await holds.release(services, request.user, token_id)
