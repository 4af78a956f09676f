"""Were acknowledged enrolments kept? Checked in the service's PostgreSQL after the run.

An enrolment the service answered 201/200 is a promise: its token row must exist with the same
booking, and its sealed template must still be there unless something allowed to remove it did
(the flight's purge, completed with a receipt, or the passenger's opt-out). Token rows outlive a
purge (their state becomes ``expired``), so the check works after the simulator has departed and
purged every flight. Plain SQL, read only, against the schema in ``migrations/``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import asyncpg

ACKNOWLEDGED = """
    SELECT a.token_id,
           t.id IS NOT NULL AS present,
           t.booking_reference IS NOT DISTINCT FROM a.booking_reference AS same_booking,
           t.state,
           EXISTS (SELECT 1 FROM templates m WHERE m.token_id = a.token_id) AS has_template,
           EXISTS (SELECT 1 FROM purge_receipts r
                    WHERE r.flight_id = t.flight_id AND r.completed_at IS NOT NULL) AS flight_purged
      FROM unnest($1::uuid[], $2::text[]) AS a(token_id, booking_reference)
      LEFT JOIN tokens t ON t.id = a.token_id"""


async def lost_enrolments(dsn: str, enrolments: list[dict[str, str]]) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(ACKNOWLEDGED, [e["token_id"] for e in enrolments],
                                [e["booking_reference"] for e in enrolments])
    finally:
        await conn.close()
    missing = [r for r in rows if not r["present"] or not r["same_booking"]]
    # A live token without its template could no longer be recognised: lost as surely as a missing row.
    no_template = [r for r in rows if r["present"] and not r["has_template"] and not r["flight_purged"]
                   and r["state"] != "revoked"]
    return {"checked": len(rows), "missing_tokens": len(missing), "templates_lost": len(no_template),
            "lost": len(missing) + len(no_template),
            "examples": [str(r["token_id"]) for r in (missing + no_template)[:5]],
            "states": dict(Counter(r["state"] or "missing" for r in rows))}

