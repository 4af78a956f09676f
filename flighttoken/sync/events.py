"""Gallery change events, published inside the writer's transaction.

PostgreSQL delivers a NOTIFY only when (and if) its transaction commits, so an event can never
announce a change that was rolled back, and a committed change always sends its event.
"""

from __future__ import annotations

import uuid
from typing import Literal

import msgspec

from flighttoken.db.connection import Connection

CHANNEL = "flighttoken_sync"

EventKind = Literal["token_upserted", "tokens_removed", "token_moved", "flight_closed", "flight_moved",
                    "watchlist_changed", "alert", "device_changed"]


class SyncEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    kind: EventKind
    origin: str = ""
    flight_id: uuid.UUID | None = None
    token_ids: list[uuid.UUID] = []
    payload: dict[str, str] = {}


_encoder = msgspec.json.Encoder()
decode_event = msgspec.json.Decoder(SyncEvent).decode


async def publish(conn: Connection, origin: str, kind: EventKind, *, flight_id: uuid.UUID | None = None,
                  token_ids: list[uuid.UUID] | None = None, payload: dict[str, str] | None = None) -> None:
    """Queue an event on ``conn``'s transaction; it is sent to every instance at commit.

    ``origin`` is the publishing instance's id (``services.instance_id``): instances skip their own.
    """
    event = SyncEvent(kind=kind, origin=origin, flight_id=flight_id, token_ids=token_ids or [],
                      payload=payload or {})
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, _encoder.encode(event).decode())
