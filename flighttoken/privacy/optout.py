"""Opt-out: a passenger withdraws consent at a kiosk or with an agent, at any time.

The caller must present the booking reference AND the travel document: the pair is what the
document holder knows, and a miss on either gives the same ``passenger_not_found``, so a kiosk can't
be used to learn whether a booking exists. On a match the templates are deleted and the live tokens
revoked in one transaction, then the tokens leave this instance's galleries, and other instances'
on the ``tokens_removed`` sync event sent at commit (until it arrives, a match there finds a revoked
token and refers). Every later touchpoint refers the passenger to the manual (staffed) lane.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import structlog

from flighttoken.db.queries import audit
from flighttoken.db.queries import privacy as q
from flighttoken.db.queries import tokens as token_q
from flighttoken.dcs import outbox
from flighttoken.devices.model import Device, DeviceKind
from flighttoken.errors import NotFound
from flighttoken.flights.scope import airline_of
from flighttoken.privacy.schemas import OptOutRequest, OptOutResult
from flighttoken.services import Services
from flighttoken.sync.events import publish
from flighttoken.tokens.ending import end_tokens
from flighttoken.vocabulary import DcsEvent

log = structlog.get_logger(__name__)
END_REASON = "opted_out"


async def forget_tokens_locally(services: Services, token_ids: Iterable[uuid.UUID]) -> None:
    """Take tokens out of this instance's galleries. Idempotent; other instances do the same on the
    ``tokens_removed`` sync event."""
    await services.galleries.remove(list(token_ids))


async def opt_out(services: Services, device: Device, req: OptOutRequest) -> OptOutResult:
    actor = f"device:{device.id}"
    channel = "kiosk" if device.kind is DeviceKind.KIOSK else "agent"
    # An airline's agents act only for their own airline's passengers; to them others don't exist.
    airline = airline_of(device)
    doc_key = services.document_keys.of_document(req.document)
    async with services.db().acquire() as conn, conn.transaction():
        tokens = await token_q.tokens_for_opt_out(conn, document_key=doc_key,
                                                  booking_reference=req.booking_reference,
                                                  flight_id=req.flight_id, airline=airline)
        if tokens:
            ids = [t["id"] for t in tokens]
            ended = await end_tokens(conn, dict.fromkeys(ids, END_REASON), state="revoked")
            deleted, revoked = ended.template_token_ids(), ended.token_ids()
            await q.withdraw_consents(conn, doc_key, sorted({t["flight_id"] for t in tokens}))
            await publish(conn, services.instance_id, "tokens_removed", token_ids=ids)
            # Each airline's DCS hears of its passenger's withdrawal in this same transaction; a repeated
            # opt-out changes nothing and sends nothing.
            if changed := sorted(revoked | deleted):
                await outbox.enqueue_token_events(conn, changed, DcsEvent.PASSENGER_OPTED_OUT, {"channel": channel})
            for t in tokens:
                await audit.record(conn, actor=actor, action="token.opt_out", outcome="ok", flight_id=t["flight_id"],
                                   token_id=t["id"], detail={"channel": channel, "revoked": t["id"] in revoked,
                                                             "template_deleted": t["id"] in deleted,
                                                             "state_before": t["state"]})
    if not tokens:
        # Audited without the document or booking: a run of these from one device is worth a look.
        await audit.record(services.db(), actor=actor, action="token.opt_out", outcome="refused",
                           flight_id=req.flight_id, detail={"channel": channel, "reason": "passenger_not_found"})
        raise NotFound("no enrolment matches this booking reference and travel document",
                       code="passenger_not_found")
    await forget_tokens_locally(services, ids)
    log.info("passenger_opted_out", channel=channel, tokens=len(ids), revoked=len(revoked),
             templates_deleted=len(deleted))
    return OptOutResult(status="withdrawn", tokens_revoked=len(revoked), templates_deleted=len(deleted))
