"""Bodies of the watchlist, alert and hold APIs (msgspec Structs). Never a template or an image out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from flighttoken.fieldtypes import PRINTABLE, AwareDatetime, Image, ReasonCode

Officer = Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=PRINTABLE, examples=["Insp. Wong 4411"])]
SubjectStatus = Literal["active", "expired", "removed"]
AlertStatus = Literal["open", "confirmed", "false_alarm", "cleared"]
AlertKind = Literal["watchlist", "random"]


class NewSubject(msgspec.Struct, forbid_unknown_fields=True):
    case_reference: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9/._-]{0,63}$",
                                                examples=["HKPF/2026/04411"])]
    reason_code: Annotated[ReasonCode, msgspec.Meta(examples=["arrest_warrant"])]
    added_by: Officer
    expires_at: AwareDatetime
    photos: Annotated[list[Image], msgspec.Meta(min_length=1, max_length=5)]


class RejectedPhoto(msgspec.Struct):
    index: int
    reasons: list[str]


class Subject(msgspec.Struct):
    """A watchlist subject as the authority sees it: never its templates."""

    id: uuid.UUID
    case_reference: str
    reason_code: str
    added_by: str
    created_at: datetime
    expires_at: datetime
    status: SubjectStatus
    templates: int
    removed_at: datetime | None = None
    removed_by: str | None = None


class EnrolledSubject(Subject):
    rejected_photos: list[RejectedPhoto] = []
    """Photos not used (no face, or a failed quality check), by position in the request."""


class SubjectPage(msgspec.Struct):
    subjects: list[Subject]
    limit: int
    offset: int


class Removal(msgspec.Struct, forbid_unknown_fields=True):
    removed_by: Officer


class Location(msgspec.Struct, omit_defaults=True):
    terminal: str | None = None
    gate: str | None = None
    lounge_id: str | None = None


class MatchedToken(msgspec.Struct):
    """The passenger token the same face matched: what an officer needs to intercept."""

    token_id: uuid.UUID
    flight_id: uuid.UUID | None
    flight: str | None
    name: str | None


class Alert(msgspec.Struct):
    """An officer referral: a watchlist hit (``kind`` watchlist) or a random secondary referral
    (``kind`` random: no subject, case or score). The passenger was told the same in both cases."""

    id: int
    kind: AlertKind
    at: datetime
    subject_id: uuid.UUID | None
    case_reference: str | None
    reason_code: str | None
    device_id: uuid.UUID
    device_name: str
    touchpoint: str
    location: Location
    score: float | None
    token: MatchedToken | None
    status: AlertStatus
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    note: str | None = None


class AlertPage(msgspec.Struct):
    alerts: list[Alert]
    next_after: int
    """Pass as ``after`` to read the next page (ids are increasing)."""


class Resolution(msgspec.Struct, forbid_unknown_fields=True):
    outcome: Literal["confirmed", "false_alarm", "cleared"]
    """confirmed keeps the token on hold; false_alarm (a wrong hit) and cleared (the passenger was
    checked and let go: how a random referral usually ends) release this alert's hold."""
    resolved_by: Officer
    note: Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00]*$")] | None = None
