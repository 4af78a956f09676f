"""Bodies of the privacy API: opt-out, purge receipts, audit queries (msgspec Structs)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec

from flighttoken.fieldtypes import Alpha3, BookingReference, DocumentNumber, DocumentType
from flighttoken.vocabulary import DecisionReason, DeviceKind, IdentifyMethod


class DocumentRef(msgspec.Struct, forbid_unknown_fields=True):
    """The travel document as the holder presents it; only its keyed MAC is ever compared."""

    type: DocumentType
    number: DocumentNumber
    issuing_state: Alpha3


class OptOutRequest(msgspec.Struct, forbid_unknown_fields=True):
    booking_reference: BookingReference
    document: DocumentRef
    flight_id: uuid.UUID | None = None
    """Only this flight's token; all of the passenger's tokens matching the booking when omitted."""


class OptOutResult(msgspec.Struct):
    status: Literal["withdrawn"]
    tokens_revoked: int
    """Live tokens revoked by this request (0 when they had already ended: opt-out is idempotent)."""
    templates_deleted: int
    next_step: Literal["manual_lane"] = "manual_lane"
    """Every touchpoint now refers this passenger to a staffed lane."""


class PurgeReceipt(msgspec.Struct):
    """Evidence that a flight's biometric data is gone: its data key destroyed, its templates deleted."""

    flight_id: uuid.UUID
    flight: str
    scheduled_departure: datetime
    trigger: str
    initiated_by: str
    started_at: datetime
    completed: bool
    key_id: uuid.UUID | None
    """Id of the destroyed data key; every copy of the flight's template ciphertext needed it."""
    kek_id: str | None
    key_destroyed_at: datetime | None
    templates_deleted: int
    tokens_ended: int
    tokens_total: int | None
    consents_kept: int | None
    completed_at: datetime | None


class ReceiptPage(msgspec.Struct):
    receipts: list[PurgeReceipt]
    next_cursor: str | None = None


class DeviceRef(msgspec.Struct, omit_defaults=True):
    """Who and where: the device (and its location) behind an event."""

    id: uuid.UUID
    name: str
    kind: DeviceKind
    terminal: str | None = None
    gate: str | None = None
    lounge_id: str | None = None


class AuditEvent(msgspec.Struct):
    id: int
    at: datetime
    actor: str
    device: DeviceRef | None
    action: str
    outcome: str
    flight_id: uuid.UUID | None
    token_id: uuid.UUID | None
    detail: dict[str, Any]


class AuditPage(msgspec.Struct):
    events: list[AuditEvent]
    next_cursor: str | None = None


class DecisionEvent(msgspec.Struct):
    id: int
    at: datetime
    device: DeviceRef | None
    touchpoint: DeviceKind
    flight_id: uuid.UUID | None
    token_id: uuid.UUID | None
    decision: Literal["proceed", "refer"]
    reason: DecisionReason
    score: float | None
    margin: float | None
    latency_ms: float
    method: IdentifyMethod = IdentifyMethod.FACE
    """How the passenger was identified: face-only, boarding pass + 1:1, or by hand."""
    bags: int | None = None
    """What a bag drop reported with the decision."""


class DecisionPage(msgspec.Struct):
    decisions: list[DecisionEvent]
    next_cursor: str | None = None
