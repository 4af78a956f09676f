"""The one way to queue a DCS event: ``await enqueue(conn, airline=..., kind=..., payload=...)``,
called inside the caller's transaction so the event exists exactly when the change commits.

An airline without a webhook gets nothing queued (the call returns None). The biometric boarding
does not call this: its outbox row is a CTE of the decision statement (db/queries/journey.py),
with the payload of :func:`boarded_payload`'s shape. Payloads carry no biometric data and no
document number (README, "DCS webhooks").
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from flighttoken.db.connection import Executor
from flighttoken.db.queries import dcs as q
from flighttoken.vocabulary import BoardingMethod, DcsEvent

_encode = msgspec.json.Encoder().encode
# Keys a payload may never carry, whichever path builds it.
FORBIDDEN_KEYS = frozenset({"document_number", "document_key", "template", "embedding", "image", "photo"})


def _check(payload: dict[str, Any]) -> None:
    bad = FORBIDDEN_KEYS & payload.keys()
    if bad:
        raise ValueError(f"a DCS payload must not carry {sorted(bad)}")


async def enqueue(conn: Executor, *, airline: str, kind: DcsEvent, payload: dict[str, Any]) -> uuid.UUID | None:
    """Queue one event for ``airline``; its id (the receiver's dedupe key), or None without a webhook."""
    _check(payload)
    return await q.enqueue(conn, airline, DcsEvent(kind).value, _encode(payload).decode())


def boarded_payload(*, token_id: uuid.UUID, flight_id: uuid.UUID, flight: str, scheduled_departure: datetime,
                    booking_reference: str, seat: str | None, boarded_at: datetime, method: BoardingMethod,
                    gate: str | None) -> dict[str, Any]:
    """A ``passenger.boarded`` payload, for the 1:1 and manual boarding paths (same keys as the
    biometric path's SQL)."""
    return {"token_id": token_id, "flight_id": flight_id, "flight": flight, "scheduled_departure": scheduled_departure,
            "booking_reference": booking_reference, "seat": seat, "boarded_at": boarded_at,
            "method": BoardingMethod(method).value, "gate": gate}


async def enqueue_token_events(conn: Executor, token_ids: list[uuid.UUID], kind: DcsEvent,
                               extra: dict[str, Any]) -> list[uuid.UUID]:
    """One event per token (token id, flight, booking reference, seat, state, plus ``extra``) for
    the tokens whose airline has a webhook: opt-out and revocation."""
    _check(extra)
    return await q.enqueue_for_tokens(conn, token_ids, DcsEvent(kind).value, _encode(extra).decode())


async def enqueue_boarding_closed(conn: Executor, flight_id: uuid.UUID, state: str) -> uuid.UUID | None:
    """``boarding.closed`` with the not-boarded list, read in the closing transaction."""
    return await q.enqueue_boarding_closed(conn, flight_id, state)
