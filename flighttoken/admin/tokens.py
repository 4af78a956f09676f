"""Finding a passenger's tokens (by booking reference or travel document) and revoking one.

Lookups are audited too: who searched for a passenger is itself personal-data processing. An
airline_ops key finds only its airline's tokens; any other token is "not found".
"""

from __future__ import annotations

import uuid

import asyncpg
import structlog

from flighttoken.admin.schemas import Revocation, TokenView
from flighttoken.db.connection import one
from flighttoken.db.queries import audit
from flighttoken.db.queries import operations as ops_q
from flighttoken.devices.model import Device
from flighttoken.errors import Conflict, InvalidRequest, NotFound
from flighttoken.flights.scope import airline_of, can_see
from flighttoken.flights.service import actor_of
from flighttoken.services import Services
from flighttoken.sync.events import publish

log = structlog.get_logger(__name__)
_REVOCABLE = frozenset({"enrolled", "immigration_cleared", "boarded"})


def _view(row: asyncpg.Record) -> TokenView:
    return TokenView(
        id=row["id"], flight_id=row["flight_id"], flight=f"{row['airline']}{row['number']}",
        scheduled_departure=row["scheduled_departure"], state=row["state"], surname=row["surname"],
        given_names=row["given_names"], booking_reference=row["booking_reference"], seat=row["seat"],
        document_type=row["document_type"], document_last4=row["document_last4"],
        issuing_state=row["issuing_state"], nationality=row["nationality"], lounge_eligible=row["lounge_eligible"],
        enrolled_at=row["enrolled_at"], cleared_at=row["cleared_at"], last_lounge_at=row["last_lounge_at"],
        boarded_at=row["boarded_at"], ended_at=row["ended_at"], end_reason=row["end_reason"],
        on_hold=row["on_hold"], staff_hold=row["staff_hold"], officer_referral=row["officer_referral"])


def _not_found() -> NotFound:
    return NotFound("no such token", code="token_not_found")


async def lookup(services: Services, viewer: Device, *, booking_reference: str | None,
                 document_number: str | None, issuing_state: str | None, document_type: str) -> list[TokenView]:
    scope, pool = airline_of(viewer), services.db()
    if booking_reference and not document_number:
        rows = await ops_q.tokens_by_booking(pool, booking_reference.strip().upper(), scope)
        by = "booking_reference"
    elif document_number and issuing_state and not booking_reference:
        # The same keyed MAC enrolment stores: the number itself is never kept or logged.
        doc_key = services.document_keys.of(issuing_state.strip().upper(), document_type.strip().upper(),
                                            document_number.strip().upper())
        rows = await ops_q.tokens_by_document(pool, doc_key, scope)
        by = "document"
    else:
        raise InvalidRequest("look up by booking_reference, or by document_number with issuing_state",
                             code="lookup_required")
    await audit.record(pool, actor=actor_of(viewer), action="token.lookup", outcome="ok",
                       detail={"by": by, "found": len(rows)})
    return [_view(r) for r in rows]


async def get_token(services: Services, viewer: Device, token_id: uuid.UUID) -> TokenView:
    row = await ops_q.token_view(services.db(), token_id)
    if row is None or not can_see(viewer, row["airline"]):
        raise _not_found()
    return _view(row)


async def revoke(services: Services, actor: Device, token_id: uuid.UUID, revocation: Revocation) -> TokenView:
    async with services.db().acquire() as conn, conn.transaction():
        row = await ops_q.token_view(conn, token_id, for_update=True)
        if row is None or not can_see(actor, row["airline"]):
            raise _not_found()
        if row["state"] == "revoked":
            return _view(row)  # revoking twice changes nothing
        if row["state"] not in _REVOCABLE:
            raise Conflict(f"the token has already ended ({row['state']})", code="token_ended")
        await ops_q.revoke_token(conn, token_id, revocation.reason)
        await audit.record(conn, actor=actor_of(actor), action="token.revoke", outcome="ok",
                           flight_id=row["flight_id"], token_id=token_id,
                           detail={"reason": revocation.reason, "note": revocation.note, "was": row["state"]})
        await publish(conn, services.instance_id, "tokens_removed", flight_id=row["flight_id"],
                      token_ids=[token_id])
        row = one(await ops_q.token_view(conn, token_id))  # the token just revoked
    # After commit: a touchpoint must not match this face any more, on this instance or any other.
    await services.galleries.remove([token_id])
    log.info("token_revoked", token_id=str(token_id), reason=revocation.reason)
    return _view(row)
