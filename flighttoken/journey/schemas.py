"""Request and response bodies of the journey API (msgspec Structs at the boundary)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from flighttoken.fieldtypes import (
    PRINTABLE,
    Alpha3,
    AwareDatetime,
    BoardingPassText,
    BookingReference,
    DocumentNumber,
    DocumentType,
    Image,
    Name,
    StaffId,
)
from flighttoken.vocabulary import DecisionReason, IdentifyMethod, ManualBoardingReason, TokenState


class TravelDocument(msgspec.Struct, forbid_unknown_fields=True):
    type: Annotated[DocumentType, msgspec.Meta(description="ICAO 9303 document code, e.g. P for passport")]
    number: DocumentNumber
    issuing_state: Alpha3
    surname: Name
    given_names: Annotated[str, msgspec.Meta(max_length=80, pattern=PRINTABLE)]
    nationality: Alpha3
    date_of_birth: date
    expiry: date


class Booking(msgspec.Struct, forbid_unknown_fields=True):
    flight_id: uuid.UUID
    booking_reference: BookingReference
    seat: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,3}[A-K]$", examples=["42A"])] | None = None
    lounge_eligible: bool = False


class Consent(msgspec.Struct, forbid_unknown_fields=True):
    terms_version: Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=PRINTABLE)]
    terms_sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$",
                                              description="SHA-256 of the terms text the passenger accepted")]
    consented_at: AwareDatetime


class EnrolmentRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The booking comes from the airline's record (``booking``: a kiosk) or from the passenger's
    boarding pass (``boarding_pass``: an e-Security Gate, late enrolment); the enrolment policy table
    (decisions/policy.py ``ENROLMENT_POINTS``) says which, and the other is refused."""

    document: TravelDocument
    captures: Annotated[list[Image], msgspec.Meta(min_length=1, max_length=5)]
    booking: Booking | None = None
    boarding_pass: BoardingPassText | None = None
    """The pass's barcode text: flight (carrier, number, date), booking reference and seat; its name
    must be the document's."""
    consent: Consent | None = None
    chip_photo: Image | None = None
    """ICAO 9303 DG2 face image read from the document chip, for a 1:1 check against the live face."""


class EnrolmentResult(msgspec.Struct):
    token_id: uuid.UUID
    state: TokenState
    flight_id: uuid.UUID
    created: bool
    enrolled_at: datetime
    template_updated: bool


class PassengerView(msgspec.Struct):
    """What a boarding gate may show the agent: never a document number or a photo."""

    name: str
    seat: str | None
    flight: str


class Decision(msgspec.Struct, omit_defaults=True):
    decision: Literal["proceed", "refer"]
    reason: DecisionReason
    event_id: int = 0
    token_id: uuid.UUID | None = None
    passenger: PassengerView | None = None
    method: IdentifyMethod = IdentifyMethod.FACE
    """How the passenger was identified; sent only when not face-only (a ``Boarding-Pass`` header)."""


class ManualBoardingRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A gate agent boards a passenger by hand, after checking their document.

    The passenger is named by exactly one of ``token_id`` (from the agent's look-up or a refer's
    misuse answer) or ``boarding_pass`` (the pass's barcode text, IATA BCBP: the token on this gate's
    boarding flight under the pass's PNR and name)."""

    agent_id: Annotated[StaffId, msgspec.Meta(description="the agent's staff id, recorded and audited")]
    reason_code: ManualBoardingReason
    token_id: uuid.UUID | None = None
    boarding_pass: BoardingPassText | None = None


class ManualBoarding(msgspec.Struct):
    """A manual boarding that happened: the token is boarded."""

    id: int
    token_id: uuid.UUID
    flight_id: uuid.UUID
    agent_id: str
    reason_code: ManualBoardingReason
    boarded_at: datetime
    passenger: PassengerView
