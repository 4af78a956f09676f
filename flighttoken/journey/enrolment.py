"""Enrolment at the check-in kiosk, or late at an e-Security Gate: document + booking (the airline's
record at a kiosk, the boarding pass at an e-Security Gate: journey/enrolment_booking.py) + consent +
live face → a flight token. The kinds that enrol, and what each must send, are the enrolment policy
table (decisions/policy.py ``ENROLMENT_POINTS``); the rules below are the same for all.

Order matters: everything that can refuse the request runs before anything is written, and the
write is one transaction, so a refused enrolment leaves no trace but its audit event.

Re-enrolment (the document already has a token on the flight) is bound to what was enrolled: the
same booking reference, and a live face matching the enrolled template 1:1; a token past check-in
never gets a new template. Otherwise anyone at any kiosk could put their face on a passenger's
token and board as them (issue 16).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import numpy as np
import structlog

from flighttoken.db.queries import audit
from flighttoken.db.queries import tokens as token_q
from flighttoken.decisions.policy import ENROLMENT_POINTS, Standing
from flighttoken.devices.model import Device
from flighttoken.errors import Conflict, Unprocessable
from flighttoken.journey.cover import screen_enrolment
from flighttoken.journey.enrolment_booking import booking_of
from flighttoken.journey.schemas import Booking, EnrolmentRequest, EnrolmentResult
from flighttoken.privacy.vault import TemplateVault
from flighttoken.services import Services
from flighttoken.sync.events import publish
from flighttoken.tokens import holds
from flighttoken.vocabulary import ENDED_TOKEN_STATES, TokenState

log = structlog.get_logger(__name__)


async def _live_template(services: Services, captures: list[bytes]) -> tuple[np.ndarray, float]:
    """Average the templates of every capture that passes the quality gates."""
    analyses = await asyncio.gather(*(services.engine.analyse(c) for c in captures))
    # A template is made whenever a subject face exists, so a passing capture has both.
    passing = [(a.template, a.subject) for a in analyses
               if a.template is not None and a.subject is not None and not a.quality_failures]
    if not passing:
        reasons = sorted({r for a in analyses for r in (a.quality_failures or ["no_face"])})
        raise Unprocessable("no capture passed the quality checks; capture again",
                            code="capture_rejected", reasons=reasons)
    vectors = np.stack([template.vector for template, _ in passing])
    mean = vectors.mean(axis=0)
    quality = max(subject.det_score for _, subject in passing)
    return (mean / np.linalg.norm(mean)).astype(np.float32), float(quality)


async def enrol(services: Services, device: Device, req: EnrolmentRequest) -> EnrolmentResult:
    settings, pool, engine = services.settings, services.db(), services.engine
    actor = f"device:{device.id}"
    if req.consent is None:
        raise Unprocessable("record the passenger's consent before capture", code="consent_required")
    if ENROLMENT_POINTS[device.kind].requires_chip_photo and req.chip_photo is None:
        raise Unprocessable(f"a {device.kind.value} enrols only with the document chip's photo (DG2)",
                            code="chip_photo_required")
    # The resolved booking (the airline's record, or the boarding pass's) is what is checked and stored.
    booking, flight = await booking_of(services, device, req, datetime.now(UTC))
    if not flight.is_open:
        raise Conflict(f"flight {flight.code} has {flight.state.value}", code="flight_closed")
    if req.document.expiry < flight.scheduled_departure.date():
        raise Unprocessable("the travel document expires before departure", code="document_expired")

    vector, quality = await _live_template(services, req.captures)
    chip_vector = None
    if req.chip_photo is not None:
        chip = await engine.analyse(req.chip_photo)
        if chip.template is None:
            raise Unprocessable("no face found in the chip photo", code="chip_photo_unusable")
        chip_vector = chip.template.vector
        score = float(np.dot(chip_vector, vector))
        if score < settings.decisions.verify_threshold:
            await audit.record(pool, actor=actor, action="token.enrol", outcome="refused",
                               flight_id=flight.id, detail={"reason": "chip_photo_mismatch"})
            raise Unprocessable("the live face does not match the document's chip photo",
                                code="chip_photo_mismatch")

    doc_key = services.document_keys.of_document(req.document)
    lounge_eligible = booking.lounge_eligible
    async with services.enrolment_locks[flight.window_start]:
        await _refuse_duplicate_face(services, actor, flight.id, flight.window_start, vector, doc_key)
        refusal: Refusal | None = None
        try:
            async with pool.acquire() as conn, conn.transaction():
                existing = await token_q.by_document(conn, flight.id, doc_key)
                if existing is not None:
                    refusal = await _check_reenrolment(services, conn, booking, existing, vector, chip_vector)
                if refusal is not None:
                    assert existing is not None  # only an enrolled token's re-enrolment is refused
                    # Committed without a consent, booking or template change: only the refusal's
                    # audit event (and, for suspected fraud, the staff hold) is written.
                    await audit.record(conn, actor=actor, action="token.enrol", outcome="refused",
                                       flight_id=flight.id, token_id=existing["id"], detail=refusal.detail)
                    if refusal.hold_reason:
                        await holds.place_in(conn, token_id=existing["id"], flight_id=flight.id,
                                             reason=refusal.hold_reason, actor=actor)
                else:
                    result = await _store(services.vault, conn, device, req, booking, flight.id, doc_key, existing,
                                          vector, quality, engine.model_id)
                    await audit.record(conn, actor=actor, action="token.enrol", outcome="ok", flight_id=flight.id,
                                       token_id=result.token_id,
                                       detail={"created": result.created, "template_updated": result.template_updated})
                    if result.template_updated:
                        await publish(conn, services.instance_id, "token_upserted", flight_id=flight.id,
                                      token_ids=[result.token_id])
                    elif not result.created:  # lounge eligibility may have changed with the booking
                        await publish(conn, services.instance_id, "token_moved", flight_id=flight.id,
                                      token_ids=[result.token_id], payload={
                                          "state": result.state, "lounge_eligible": str(lounge_eligible)})
        except asyncpg.ObjectNotInPrerequisiteStateError:
            # Purged between our checks and the write (a trigger refuses templates without a key):
            # the same answer as for any closed flight; the transaction left nothing behind.
            raise Conflict(f"flight {flight.code} has closed", code="flight_closed") from None
        if refusal is not None:
            assert existing is not None
            log.warning("re_enrolment_refused", token_id=str(existing["id"]), flight=flight.code,
                        reason=refusal.detail["reason"], held=bool(refusal.hold_reason))
            raise refusal.error
        standing = Standing(TokenState(result.state), flight.international, lounge_eligible)
        if result.template_updated:
            # After the commit, so a face is never searchable for an enrolment that did not happen.
            # A purge committed in between has dropped the flight from the registry, which then
            # refuses this add (galleries/registry.py): the face cannot outlive the purge.
            await services.galleries.add(result.token_id, flight.id, flight.window_start, vector, standing)
        elif not result.created:
            await services.galleries.restate(result.token_id, standing)
    # After the commit: a hit holds the new token (and alerts officers); the kiosk's answer is the same.
    await screen_enrolment(services, device, vector, result.token_id)
    log.info("token_enrolled", token_id=str(result.token_id), flight=flight.code, created=result.created)
    return result


@dataclass
class Refusal:
    error: Conflict
    detail: dict[str, object]
    hold_reason: str | None = None


# A token past check-in keeps the face the e-channel (and the lounge) recognised: a kiosk never
# replaces it, whoever asks.
_PAST_CHECK_IN = frozenset({TokenState.IMMIGRATION_CLEARED, TokenState.BOARDED})


async def _check_reenrolment(services: Services, conn, booking: Booking, existing, vector: np.ndarray,
                             chip_vector: np.ndarray | None) -> Refusal | None:
    """Whether this kiosk may touch the (flight, document) token at all: None, or why not.

    The template is bound to the enrolled face: the new live face must match it 1:1 at
    ``verify_threshold`` (one decrypt and one dot product, no search), whatever else the request
    carries. A booking reference is bound to the token too.
    """
    if existing["state"] in (*ENDED_TOKEN_STATES, TokenState.BOARDED):
        return Refusal(Conflict(f"this passenger's token has ended ({existing['state']})", code="token_ended"),
                       {"reason": "token_ended", "state": existing["state"]})
    if existing["booking_reference"] != booking.booking_reference:
        return Refusal(Conflict("this travel document is enrolled on this flight under another booking",
                                code="booking_mismatch"), {"reason": "booking_mismatch"})
    if existing["on_hold"]:
        return Refusal(_held(), {"reason": "token_held"})
    threshold = services.settings.decisions.verify_threshold
    enrolled = await _enrolled_template(services, conn, existing["id"], booking.flight_id)
    if enrolled is None:
        # No template made by the running model (or none at all): nothing to verify the face
        # against, so no kiosk may put one there; the passenger goes to the staffed counter.
        return Refusal(_mismatch(), {"reason": "face_mismatch", "enrolled_template": "none"})
    score = float(np.dot(enrolled, vector))
    if score >= threshold:
        return None
    detail: dict[str, object] = {"reason": "face_mismatch", "score": round(score, 3), "threshold": threshold}
    if chip_vector is not None:
        # The chip photo already matched this live face (checked before). If it does not match
        # the enrolled face either, the document holder is here now and someone else enrolled
        # with their document: hold the token for staff, everywhere.
        chip_score = float(np.dot(chip_vector, enrolled))
        detail["chip_vs_enrolled"] = round(chip_score, 3)
        if chip_score < threshold:
            detail["reason"] = "enrolled_face_not_document_holder"
            return Refusal(_held(), detail, hold_reason="enrolment_fraud_suspected")
    return Refusal(_mismatch(), detail)


def _mismatch() -> Conflict:
    return Conflict("this face does not match the face enrolled with this travel document; the token is "
                    "unchanged (ask staff)", code="face_mismatch")


def _held() -> Conflict:
    return Conflict("this passenger's token is held: send the passenger to an officer", code="token_held")


async def _enrolled_template(services: Services, conn, token_id: uuid.UUID, flight_id: uuid.UUID) -> np.ndarray | None:
    row = await token_q.template_of(conn, token_id)
    if row is None or row["model_id"] != services.engine.model_id:
        return None
    dek = await services.vault.flight_key(flight_id)
    if dek is None:
        raise Conflict("the flight's data has been purged", code="flight_closed")
    return TemplateVault.open_template(dek, token_id, row["model_id"], row["sealed"])


async def _refuse_duplicate_face(services: Services, actor: str, flight_id: uuid.UUID, window: datetime,
                                 vector: np.ndarray, doc_key: bytes) -> None:
    """A face already enrolled in this window under another document is a token swap or a second
    identity: refuse, and audit it for the airline and the authority."""
    candidates = await services.galleries.search_windows([window], vector, k=5)
    close = [uuid.UUID(c.id) for c in candidates if c.score >= services.settings.decisions.duplicate_threshold]
    if not close:
        return
    keys = await token_q.document_keys(services.db(), close)
    others = [t for t in close if keys.get(t) not in (None, doc_key)]
    if others:
        await audit.record(services.db(), actor=actor, action="token.enrol", outcome="refused",
                           flight_id=flight_id, token_id=others[0],
                           detail={"reason": "face_already_enrolled"})
        raise Conflict("this face is already enrolled under another travel document",
                       code="face_already_enrolled")


async def _store(vault: TemplateVault, conn, device: Device, req: EnrolmentRequest, booking: Booking,
                 flight_id: uuid.UUID, doc_key: bytes, existing, vector: np.ndarray, quality: float,
                 model_id: str) -> EnrolmentResult:
    """Write an accepted enrolment: ``existing`` (locked) has passed :func:`_check_reenrolment`."""
    consent = req.consent
    assert consent is not None
    consent_id = uuid.uuid4()
    await token_q.insert_consent(conn, consent_id=consent_id, flight_id=flight_id, document_key=doc_key,
                                 terms_version=consent.terms_version, terms_sha256=consent.terms_sha256,
                                 consented_at=consent.consented_at, device_id=device.id)
    doc = req.document
    if existing is not None:
        token_id, created = existing["id"], False
        # Same booking reference (checked): seat and lounge eligibility may change with it.
        await token_q.refresh_booking(conn, token_id, seat=booking.seat, lounge_eligible=booking.lounge_eligible,
                                      consent_id=consent_id)
        if existing["state"] in _PAST_CHECK_IN or existing["last_lounge_at"] is not None:
            update = False
        else:
            # Re-enrolment may improve the template, never degrade it.
            previous = await token_q.template_of(conn, token_id)
            update = previous is None or quality >= previous["quality"]
        state, enrolled_at = existing["state"], existing["enrolled_at"]
    else:
        row = await token_q.insert_token(
            conn, token_id=uuid.uuid4(), flight_id=flight_id, document_key=doc_key, document_type=doc.type,
            document_last4=doc.number[-4:], issuing_state=doc.issuing_state, nationality=doc.nationality,
            surname=doc.surname, given_names=doc.given_names, booking_reference=booking.booking_reference,
            seat=booking.seat, lounge_eligible=booking.lounge_eligible, consent_id=consent_id,
            enrolled_by=device.kind.value)
        token_id, created, update = row["id"], True, True
        state, enrolled_at = row["state"], row["enrolled_at"]
    if update:
        dek = await vault.flight_key(flight_id)
        if dek is None:
            raise Conflict("the flight's data has been purged", code="flight_closed")
        sealed = vault.seal_template(dek, token_id, model_id, vector)
        await token_q.upsert_template(conn, token_id=token_id, flight_id=flight_id, model_id=model_id,
                                      sealed=sealed, quality=quality)
    return EnrolmentResult(token_id=token_id, state=state, flight_id=flight_id, created=created,
                           enrolled_at=enrolled_at, template_updated=update)
