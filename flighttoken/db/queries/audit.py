from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import msgspec


async def record(conn: asyncpg.Connection | asyncpg.Pool, *, actor: str, action: str, outcome: str,
                 flight_id: uuid.UUID | None = None, token_id: uuid.UUID | None = None,
                 detail: dict[str, Any] | None = None) -> None:
    """Append one audit event. Never pass an image, a template or a key in ``detail``."""
    await conn.execute(
        "INSERT INTO audit_events (actor, action, outcome, flight_id, token_id, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        actor, action, outcome, flight_id, token_id, msgspec.json.encode(detail or {}).decode())
