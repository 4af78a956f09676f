"""Independent evidence of a flight's purge, read straight from the service's PostgreSQL.

The purge receipt is the service's own claim; with ``--database-url`` the simulator also counts
what is left. Plain SQL, read only, against the schema in ``migrations/``.
"""

from __future__ import annotations

import uuid

LEFTOVERS = """
    SELECT (SELECT count(*) FROM templates WHERE flight_id = $1) AS templates,
           (SELECT count(*) FROM flight_keys WHERE flight_id = $1) AS flight_keys,
           (SELECT count(*) FROM tokens WHERE flight_id = $1
                AND state IN ('enrolled', 'immigration_cleared', 'boarded')) AS live_tokens"""


async def leftovers(dsn: str, flight_id: uuid.UUID) -> dict[str, int]:
    """What the purge should have removed: template rows, the flight's data key, live tokens."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(LEFTOVERS, flight_id)
    finally:
        await conn.close()
    return dict(row)
