"""Bodies of the admin API. A token view never carries a document number, a photo or a template."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from flighttoken.flights.model import AirlineCode, GateCode
from flighttoken.vocabulary import DeviceKind, TokenState


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


Label = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9 ._-]{1,64}$")]


class NewDevice(msgspec.Struct, forbid_unknown_fields=True):
    name: Label
    kind: DeviceKind
    terminal: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{1,8}$")] | None = None
    gate: GateCode | None = None
    lounge_id: Label | None = None
    airline: AirlineCode | None = None


class DeviceView(msgspec.Struct):
    id: uuid.UUID
    name: str
    kind: DeviceKind
    terminal: str | None
    gate: str | None
    lounge_id: str | None
    airline: str | None
    created_at: datetime
    disabled_at: datetime | None


class DeviceList(msgspec.Struct):
    devices: list[DeviceView]


class DeviceKey(msgspec.Struct):
    device: DeviceView
    api_key: str
    """Shown once: only its SHA-256 digest is stored."""
