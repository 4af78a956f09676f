"""SQL for template rows that fail to open (flighttoken/galleries/quarantine.py)."""

from __future__ import annotations

import uuid

from flighttoken.db.connection import Connection
from flighttoken.db.queries import audit

HOLD_REASON = "template_unreadable"


async def hold_unreadable(conn: Connection, token_id: uuid.UUID, *, instance: str) -> bool:
    """Hold the token for staff (every touchpoint: see_officer) and audit it. The hold is placed once
    per token, so a hold staff released stays released; the audit names each instance that found
    the row. False when the token no longer exists. Call inside a transaction."""
    token = await conn.fetchrow("SELECT id, flight_id FROM tokens WHERE id = $1 FOR UPDATE", token_id)
    if token is None:
        return False
    placed_before = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM token_holds WHERE token_id = $1 AND reason = $2 AND placed_by = 'system')",
        token_id, HOLD_REASON)
    if not placed_before:
        # A staff hold already in force (unique per token) keeps the token held just the same.
        await conn.execute(
            "INSERT INTO token_holds (token_id, holder, reason, placed_by) VALUES ($1, 'staff', $2, 'system')"
            " ON CONFLICT (token_id) WHERE holder = 'staff' AND released_at IS NULL DO NOTHING",
            token_id, HOLD_REASON)
        await conn.execute("UPDATE tokens SET on_hold = true WHERE id = $1", token_id)
    await audit.record(conn, actor="system", action="template.quarantine", outcome="error",
                       flight_id=token["flight_id"], token_id=token_id,
                       detail={"reason": HOLD_REASON, "instance": instance, "held": not placed_before})
    return True
