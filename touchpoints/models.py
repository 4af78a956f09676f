"""What devices send and receive, as msgspec Structs.

Mirrors of the service's bodies, written for integrators: responses ignore fields they do not know
(a newer service may add some), requests carry images as ``bytes`` (msgspec writes them as base64).
Nothing here imports the service package, so a device needs only ``httpx`` and ``msgspec``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime
from typing import Literal

import msgspec

# ---- refer reasons (the service's DecisionReason; tests/journey/test_vocabulary.py keeps them equal) --

# The capture: another capture may fix it.
CAPTURE_REASONS = frozenset({"no_face", "face_too_small", "too_blurry", "too_dark", "too_bright", "head_turned",
                             "head_tilted", "low_detection_score", "tailgating"})
# The search: another capture may find the passenger.
MATCHING_REASONS = frozenset({"no_match", "ambiguous_match"})
# The journey rules and the decision's write: another capture changes nothing.
JOURNEY_REASONS = frozenset({"immigration_not_cleared", "already_cleared", "already_boarded", "not_lounge_eligible",
                             "wrong_flight", "gate_not_boarding", "flight_not_in_window", "flight_closed",
                             "not_international", "not_a_touchpoint", "token_ended", "state_changed", "see_officer"})
# The boarding-pass fallback (a ``Boarding-Pass`` header): the pass names no live token, or the face
# does not match the token it names (audited as possible misuse).
PASS_REASONS = frozenset({"no_token", "face_mismatch"})
REFER_REASONS = CAPTURE_REASONS | MATCHING_REASONS | JOURNEY_REASONS | PASS_REASONS
# Why a gate agent boards a passenger by hand (the service's ManualBoardingReason).
MANUAL_BOARDING_REASONS = frozenset({"face_not_recognised", "capture_refused", "no_token_face", "device_fault",
                                     "other"})

# ---- responses ---------------------------------------------------------------------------------


class PassengerView(msgspec.Struct):
    """What a boarding gate may show its agent: never a document number or a photo."""

    name: str
    seat: str | None = None
    flight: str = ""


class Decision(msgspec.Struct):
    """A touchpoint's answer: ``proceed`` (open the gate) or ``refer`` (send to staff)."""

    decision: Literal["proceed", "refer"]
    reason: str
    """``matched`` with proceed; one of ``REFER_REASONS`` with refer."""
    event_id: int = 0
    token_id: uuid.UUID | None = None
    passenger: PassengerView | None = None
    method: str = "face"
    """``face`` (face-only) or ``boarding_pass`` (the pass named the token, the face matched it 1:1)."""

    @property
    def proceed(self) -> bool:
        return self.decision == "proceed"


class ManualBoarding(msgspec.Struct):
    """A gate agent's manual boarding that happened: the passenger is boarded."""

    id: int
    token_id: uuid.UUID
    flight_id: uuid.UUID
    agent_id: str
    reason_code: str
    boarded_at: datetime
    passenger: PassengerView | None = None


class EnrolmentResult(msgspec.Struct):
    token_id: uuid.UUID
    state: str
    flight_id: uuid.UUID
    created: bool
    """False when this document was already enrolled on this flight (the same token comes back)."""
    enrolled_at: datetime
    template_updated: bool = True


class Flight(msgspec.Struct):
    id: uuid.UUID
    airline: str
    number: str
    scheduled_departure: datetime
    state: str
    destination: str = ""
    international: bool = True
    gate: str | None = None
    window_start: datetime | None = None

    @property
    def code(self) -> str:
        return f"{self.airline}{self.number}"


class Problem(msgspec.Struct):
    """An ``application/problem+json`` error body; ``code`` is stable, ``detail`` is for people."""

    status: int
    code: str
    title: str = ""
    detail: str = ""
    reasons: list[str] = []
    request_id: str | None = None


# ---- requests ----------------------------------------------------------------------------------


class TravelDocument(msgspec.Struct):
    type: str
    """ICAO 9303 document code, e.g. ``P`` for a passport."""
    number: str
    issuing_state: str
    surname: str
    given_names: str
    nationality: str
    date_of_birth: date
    expiry: date


class Booking(msgspec.Struct):
    flight_id: uuid.UUID
    booking_reference: str
    seat: str | None = None
    lounge_eligible: bool = False


class Consent(msgspec.Struct):
    terms_version: str
    terms_sha256: str
    consented_at: datetime

    @classmethod
    def accepted(cls, terms_text: str, version: str, at: datetime | None = None) -> Consent:
        """The passenger accepted exactly ``terms_text`` (its SHA-256 is what the service keeps)."""
        return cls(terms_version=version, terms_sha256=hashlib.sha256(terms_text.encode()).hexdigest(),
                   consented_at=at or datetime.now(UTC))


class EnrolmentRequest(msgspec.Struct, omit_defaults=True):
    """A kiosk sends ``booking`` (the airline's record); an e-Security Gate (late enrolment) sends
    ``boarding_pass`` instead, and the chip photo."""

    document: TravelDocument
    captures: list[bytes]
    """One to five live captures (JPEG or PNG)."""
    booking: Booking | None = None
    boarding_pass: str | None = None
    """The boarding pass's barcode text (IATA BCBP): flight, booking reference and seat come from it."""
    consent: Consent | None = None
    chip_photo: bytes | None = None
    """The document chip's face image (DG2), for a 1:1 check against the live face."""


class NewFlight(msgspec.Struct, omit_defaults=True):
    airline: str
    number: str
    scheduled_departure: datetime
    destination: str
    gate: str | None = None
    international: bool = True


class ManualBoardingRequest(msgspec.Struct, omit_defaults=True):
    """Board a passenger by hand after checking their document (a gate key)."""

    agent_id: str
    """The agent's staff id: 1 to 40 of letters, digits and ``._@/-``."""
    reason_code: str
    """One of ``MANUAL_BOARDING_REASONS``."""
    token_id: uuid.UUID | None = None
    boarding_pass: str | None = None
    """Instead of ``token_id``: the boarding pass's barcode text (IATA BCBP)."""
