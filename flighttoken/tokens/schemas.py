"""Bodies of the token API: look-up, revocation and staff holds. A token view never carries a document
number, a photo or a template."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from flighttoken.fieldtypes import ReasonCode
from flighttoken.vocabulary import TokenState


class TokenView(msgspec.Struct):
    id: uuid.UUID
    flight_id: uuid.UUID
    flight: str
    scheduled_departure: datetime
    state: TokenState
    surname: str
    given_names: str
    booking_reference: str
    seat: str | None
    document_type: str
    document_last4: str | None
    """Only while the token lives: gone once it is revoked, opted out or expired."""
    issuing_state: str
    nationality: str
    lounge_eligible: bool
    enrolled_at: datetime
    cleared_at: datetime | None
    last_lounge_at: datetime | None
    boarded_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    on_hold: bool
    """Every touchpoint refers this token (see_officer) while any hold is in force: staff, an officer
    referral, or a template that could not be decrypted (quarantined, held for staff)."""
    staff_hold: bool
    """An airline agent's or admin's hold is in force (``PUT /v1/tokens/{id}/hold``)."""
    officer_referral: bool
    """The passenger was referred to an immigration officer and is held until the officer releases
    them. Random secondary referrals and every other cause look alike here, by design."""


class TokenList(msgspec.Struct):
    tokens: list[TokenView]


# A passenger withdrawing consent is an opt-out (POST /v1/opt-outs), which also records the withdrawal.
RevokeReason = Literal["offloaded", "misidentified", "duplicate", "document_problem", "other"]


class Revocation(msgspec.Struct, forbid_unknown_fields=True):
    reason: RevokeReason
    """offloaded: no longer travelling on this flight; misidentified: the token's face is not this passenger."""
    note: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class StaffHold(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[ReasonCode, msgspec.Meta(examples=["document_check"])]
    """Recorded for the audit trail; touchpoints only ever say see_officer."""


class HoldState(msgspec.Struct):
    token_id: uuid.UUID
    staff_hold: bool
    """Whether this staff hold is in force."""
    officer_referral: bool
    """Whether the passenger is also held for an immigration officer (a referral at a touchpoint,
    released only by the officer). Its cause is never shown: random referrals look the same."""


class StaffHoldView(msgspec.Struct, omit_defaults=True):
    token_id: uuid.UUID
    staff_hold: bool
    """Whether a staff hold is in force."""
    officer_referral: bool = False
    """As in ``HoldState``: an officer referral is in force, whatever its cause."""
    reason: str | None = None
    """e.g. ``enrolment_fraud_suspected``: placed by the service when a re-enrolment's chip photo
    (DG2) matched the new face and not the enrolled one."""
    placed_by: str | None = None
    placed_at: datetime | None = None
