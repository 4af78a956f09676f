"""Revoking a token by staff (admin or airline_ops): it ends at once, its template is destroyed and it
leaves every gallery. An airline_ops key revokes only its airline's tokens; any other is "not found"."""

from __future__ import annotations

import uuid

import structlog

from flighttoken.db.connection import one
from flighttoken.db.queries import audit
from flighttoken.db.queries import tokens as q
from flighttoken.dcs import outbox
from flighttoken.devices.model import Device
from flighttoken.errors import Conflict
from flighttoken.flights.scope import can_see
from flighttoken.services import Services
from flighttoken.sync.events import publish
from flighttoken.tokens.ending import LIVE_STATES, end_tokens
from flighttoken.tokens.lookup import not_found, to_view
from flighttoken.tokens.schemas import Revocation, TokenView
from flighttoken.vocabulary import DcsEvent, TokenState

log = structlog.get_logger(__name__)


async def revoke(services: Services, actor: Device, token_id: uuid.UUID, revocation: Revocation) -> TokenView:
    async with services.db().acquire() as conn, conn.transaction():
        row = await q.token_view(conn, token_id, for_update=True)
        if row is None or not can_see(actor, row["airline"]):
            raise not_found()
        if row["state"] == TokenState.REVOKED:
            return to_view(row)  # revoking twice changes nothing
        if row["state"] not in LIVE_STATES:
            raise Conflict(f"the token has already ended ({row['state']})", code="token_ended")
        await end_tokens(conn, {token_id: revocation.reason}, state="revoked")
        # The airline's DCS hears of it if and only if the revocation commits.
        await outbox.enqueue_token_events(conn, [token_id], DcsEvent.TOKEN_REVOKED,
                                          {"reason": revocation.reason, "state_before": row["state"]})
        await audit.record(conn, actor=f"device:{actor.id}", action="token.revoke", outcome="ok",
                           flight_id=row["flight_id"], token_id=token_id,
                           detail={"reason": revocation.reason, "note": revocation.note, "was": row["state"]})
        await publish(conn, services.instance_id, "tokens_removed", flight_id=row["flight_id"],
                      token_ids=[token_id])
        row = one(await q.token_view(conn, token_id))  # still there: revoking ends a token, never deletes it
    # After commit: a touchpoint must not match this face any more, on this instance or any other.
    await services.galleries.remove([token_id])
    log.info("token_revoked", token_id=str(token_id), reason=revocation.reason)
    return to_view(row)
