"""The service's words, each defined once: device (and touchpoint) kinds, flight and token states,
and the reasons a touchpoint gives for its answer.

The lowest layer: it imports nothing from the package, so every module may use it. They are
``StrEnum``s, so a value is its string in PostgreSQL, JSON and logs, and a msgspec Struct field typed
with one lists every value in the OpenAPI document.
"""

from __future__ import annotations

import enum


class DeviceKind(enum.StrEnum):
    KIOSK = "kiosk"
    BAG_DROP = "bag_drop"
    E_SECURITY_GATE = "e_security_gate"
    """Airside entry, before the e-channel; also enrols passengers who skipped the kiosk (late enrolment)."""
    E_CHANNEL = "e_channel"
    LOUNGE = "lounge"
    GATE = "gate"
    ADMIN = "admin"
    AIRLINE_OPS = "airline_ops"
    AUTHORITY = "authority"


class FlightState(enum.StrEnum):
    SCHEDULED = "scheduled"
    BOARDING = "boarding"
    CLOSED = "closed"
    """Boarding has closed; the aircraft has not departed yet."""
    DEPARTED = "departed"
    CANCELLED = "cancelled"


class TokenState(enum.StrEnum):
    ENROLLED = "enrolled"
    IMMIGRATION_CLEARED = "immigration_cleared"
    BOARDED = "boarded"
    REVOKED = "revoked"
    EXPIRED = "expired"


ENDED_TOKEN_STATES = frozenset({TokenState.REVOKED, TokenState.EXPIRED})


class DecisionReason(enum.StrEnum):
    """Why a touchpoint answered as it did: ``matched`` with proceed, any other value with refer."""

    MATCHED = "matched"
    # The capture (faces/quality.py): another capture may fix it.
    NO_FACE = "no_face"
    FACE_TOO_SMALL = "face_too_small"
    TOO_BLURRY = "too_blurry"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    HEAD_TURNED = "head_turned"
    HEAD_TILTED = "head_tilted"
    LOW_DETECTION_SCORE = "low_detection_score"
    TAILGATING = "tailgating"
    # The search.
    NO_MATCH = "no_match"
    AMBIGUOUS_MATCH = "ambiguous_match"
    # The journey rules (journey/rules.py) and the decision's write (db/queries/journey.py).
    IMMIGRATION_NOT_CLEARED = "immigration_not_cleared"
    ALREADY_CLEARED = "already_cleared"
    ALREADY_BOARDED = "already_boarded"
    NOT_LOUNGE_ELIGIBLE = "not_lounge_eligible"
    WRONG_FLIGHT = "wrong_flight"
    GATE_NOT_BOARDING = "gate_not_boarding"
    FLIGHT_NOT_IN_WINDOW = "flight_not_in_window"
    FLIGHT_CLOSED = "flight_closed"
    NOT_INTERNATIONAL = "not_international"
    NOT_A_TOUCHPOINT = "not_a_touchpoint"
    TOKEN_ENDED = "token_ended"
    STATE_CHANGED = "state_changed"
    """The token moved (another decision, a hold, a revoke) between the read and the write."""
    SEE_OFFICER = "see_officer"
    """Any hold, and any referral to an officer: the same words for every cause."""
    # The boarding-pass fallback (journey/pass_identify.py).
    NO_TOKEN = "no_token"
    """The boarding pass names no live token (no such flight that day, PNR or name)."""
    FACE_MISMATCH = "face_mismatch"
    """The face does not match the token the boarding pass names: audited as possible misuse."""


class IdentifyMethod(enum.StrEnum):
    """How a decision identified the passenger (journey_events.method)."""

    FACE = "face"
    """Face-only: a search of the touchpoint's purpose galleries."""
    BOARDING_PASS = "boarding_pass"
    """The boarding pass named a token and the live face was verified against it 1:1."""
    MANUAL = "manual"
    """A gate agent processed the passenger by hand."""


class ManualBoardingReason(enum.StrEnum):
    """Why a gate agent boarded a passenger by hand (POST /v1/manual-boardings), after checking the
    document: the face path could not board them. Recorded, never shown to the passenger."""

    FACE_NOT_RECOGNISED = "face_not_recognised"
    """The gate referred the passenger (no match, ambiguous match) and the document checks out."""
    CAPTURE_REFUSED = "capture_refused"
    """The passenger declined the camera at the gate (their token stays valid)."""
    NO_TOKEN_FACE = "no_token_face"
    """The token's face cannot be searched (e.g. its template was set aside as unreadable)."""
    DEVICE_FAULT = "device_fault"
    """The gate's camera or e-gate is out of order."""
    OTHER = "other"


CAPTURE_REASONS = frozenset({
    DecisionReason.NO_FACE, DecisionReason.FACE_TOO_SMALL, DecisionReason.TOO_BLURRY, DecisionReason.TOO_DARK,
    DecisionReason.TOO_BRIGHT, DecisionReason.HEAD_TURNED, DecisionReason.HEAD_TILTED,
    DecisionReason.LOW_DETECTION_SCORE, DecisionReason.TAILGATING})
MATCHING_REASONS = frozenset({DecisionReason.NO_MATCH, DecisionReason.AMBIGUOUS_MATCH})
REFER_REASONS = frozenset(DecisionReason) - {DecisionReason.MATCHED}


class DcsEvent(enum.StrEnum):
    """The events an airline's departure control system receives on its webhook (flighttoken/dcs)."""

    PASSENGER_BOARDED = "passenger.boarded"
    BOARDING_CLOSED = "boarding.closed"
    PASSENGER_OPTED_OUT = "passenger.opted_out"
    TOKEN_REVOKED = "token.revoked"


class BoardingMethod(enum.StrEnum):
    """How a ``passenger.boarded`` passenger was boarded."""

    BIOMETRIC = "biometric"
    """Face at the gate (1:N over the boarding flights' gallery)."""
    ONE_TO_ONE = "one_to_one"
    """Boarding pass scanned, then the face compared 1:1 with that token's."""
    MANUAL = "manual"
    """Boarded by gate staff."""
