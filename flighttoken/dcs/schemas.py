"""Bodies of the DCS admin API: an airline's webhook and the dead-letter list."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from flighttoken.vocabulary import DcsEvent

WebhookUrl = Annotated[str, msgspec.Meta(min_length=10, max_length=2048, pattern=r"^\S+$",
                                         examples=["https://dcs.example-airline.com/flighttoken"])]


class WebhookConfig(msgspec.Struct, forbid_unknown_fields=True):
    url: WebhookUrl
    """https (http only in development mode); no user name or password in it."""
    rotate_secret: bool = False
    """Give the webhook a new signing secret (shown once in the answer); the old one stops at once."""


class WebhookView(msgspec.Struct):
    airline: str
    url: str
    created_at: datetime
    updated_at: datetime
    secret: str | None = None
    """Only in the answer that created the webhook or rotated its secret: it is never shown again."""


class DeadLetter(msgspec.Struct):
    id: uuid.UUID
    """The event id (``FlightToken-Event-Id``); a re-drive sends the same id again."""
    airline: str
    type: DcsEvent
    data: msgspec.Raw
    created_at: datetime
    attempts: int
    last_error: str | None
    dead_at: datetime | None


class DeadLetterList(msgspec.Struct):
    events: list[DeadLetter]
