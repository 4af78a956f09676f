"""Privacy API: opt-out (kiosks and agents), purge receipts and the audit trail (admin)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from flighttoken.db.queries import audit
from flighttoken.db.queries import privacy as q
from flighttoken.devices.auth import DeviceRequest, allow
from flighttoken.devices.model import DeviceKind
from flighttoken.errors import InvalidRequest, NotFound
from flighttoken.journey import idempotency
from flighttoken.privacy import audit_log, optout
from flighttoken.privacy.purge import to_receipt
from flighttoken.privacy.schemas import (
    AuditPage,
    DecisionPage,
    OptOutRequest,
    OptOutResult,
    PurgeReceipt,
    ReceiptPage,
)
from flighttoken.services import Services

Limit = Annotated[int, QueryParameter(ge=1, le=1000, description="Most items per page")]


class OptOutController(Controller):
    path = "/v1/opt-outs"
    tags = ["privacy"]
    guards = [allow(DeviceKind.KIOSK, DeviceKind.AIRLINE_OPS, DeviceKind.ADMIN)]

    @post("/", status_code=200, summary="A passenger withdraws consent: template deleted, token revoked",
          description="Booking reference and travel document must both match (404 passenger_not_found "
                      "otherwise, whichever is wrong). Idempotent: a repeat returns 200 with zero counts; "
                      "a retry with the same `Idempotency-Key` and body gets the first answer again. "
                      "Every later touchpoint refers the passenger to the manual lane.")
    async def opt_out(self, data: JSONBody[OptOutRequest], services: NamedDependency[Services],
                      request: DeviceRequest) -> Response[OptOutResult]:
        async def execute() -> tuple[int, OptOutResult]:
            return 200, await optout.opt_out(services, request.user, data)

        return await idempotency.once(services, request, "opt_out", execute)


class PurgeReceiptController(Controller):
    path = "/v1/purge-receipts"
    tags = ["privacy"]
    guards = [allow(DeviceKind.ADMIN)]

    @get("/", summary="Completed purge receipts, oldest first")
    async def list_receipts(self, services: NamedDependency[Services], since: FromQuery[datetime | None] = None,
                            until: FromQuery[datetime | None] = None, limit: Limit = 100,
                            cursor: FromQuery[str | None] = None) -> ReceiptPage:
        audit_log.check_range(since, until)
        rows = await q.receipts(services.db(), since=since, until=until, after_id=audit_log.parse_cursor(cursor),
                                limit=limit)
        return ReceiptPage(receipts=[to_receipt(r) for r in rows],
                           next_cursor=str(rows[-1]["id"]) if len(rows) == limit else None)

    @get("/{flight_id:uuid}", summary="A flight's purge receipt (also while the purge is in progress)")
    async def read_receipt(self, flight_id: FromPath[uuid.UUID], services: NamedDependency[Services]) -> PurgeReceipt:
        row = await q.receipt(services.db(), flight_id)
        if row is None:
            raise NotFound("this flight has not been purged", code="receipt_not_found")
        return to_receipt(row)


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["privacy"]
    guards = [allow(DeviceKind.ADMIN)]

    @get("/", summary="Audit events: who, where, when, what, outcome",
         description="Filters combine; `action` ending in `*` matches a prefix (e.g. `token.*`). Times are "
                     "ISO 8601 with a UTC offset; `since` is inclusive, `until` exclusive. Page with `cursor`.")
    async def events(self, services: NamedDependency[Services], request: DeviceRequest,
                     flight_id: FromQuery[uuid.UUID | None] = None, device_id: FromQuery[uuid.UUID | None] = None,
                     since: FromQuery[datetime | None] = None, until: FromQuery[datetime | None] = None,
                     action: FromQuery[str | None] = None, outcome: FromQuery[str | None] = None,
                     limit: Limit = 100, cursor: FromQuery[str | None] = None) -> AuditPage:
        audit_log.check_range(since, until)
        if action is not None and "*" in action[:-1]:
            raise InvalidRequest("only a trailing * is allowed in action", code="invalid_action_filter")
        rows = await audit.list_events(services.db(), flight_id=flight_id, device_id=device_id, since=since,
                                       until=until, action=action, outcome=outcome,
                                       after_id=audit_log.parse_cursor(cursor), limit=limit)
        await audit_log.record_read(services, request.user, "events", flight_id=flight_id, device_id=device_id,
                                    since=since, until=until, action=action, outcome=outcome)
        return AuditPage(events=[audit_log.to_event(r) for r in rows],
                         next_cursor=str(rows[-1]["id"]) if len(rows) == limit else None)

    @get("/decisions", summary="Touchpoint decisions (proceed / refer), never an image or a template")
    async def decisions(self, services: NamedDependency[Services], request: DeviceRequest,
                        flight_id: FromQuery[uuid.UUID | None] = None, device_id: FromQuery[uuid.UUID | None] = None,
                        since: FromQuery[datetime | None] = None, until: FromQuery[datetime | None] = None,
                        decision: FromQuery[str | None] = None, reason: FromQuery[str | None] = None,
                        limit: Limit = 100, cursor: FromQuery[str | None] = None) -> DecisionPage:
        audit_log.check_range(since, until)
        rows = await audit.list_decisions(services.db(), flight_id=flight_id, device_id=device_id, since=since,
                                          until=until, decision=decision, reason=reason,
                                          after_id=audit_log.parse_cursor(cursor), limit=limit)
        await audit_log.record_read(services, request.user, "decisions", flight_id=flight_id, device_id=device_id,
                                    since=since, until=until, decision=decision, reason=reason)
        return DecisionPage(decisions=[audit_log.to_decision(r) for r in rows],
                            next_cursor=str(rows[-1]["id"]) if len(rows) == limit else None)
