"""Periodic repair: make this instance's galleries match PostgreSQL, whatever notifications it missed.

Compares ids only (cheap: one index-only style query, no template bytes) and loads or drops the
difference; a token whose standing changed unannounced moves between purpose galleries from
memory. A template replaced in place (re-enrolment) without a notification is not detected here; the
next rebuild (restart) picks it up.
"""

from __future__ import annotations

import structlog

from flighttoken.db.queries import tokens as token_q
from flighttoken.galleries.purpose import standing_of
from flighttoken.services import Services
from flighttoken.sync.apply import load_into_galleries

log = structlog.get_logger(__name__)


async def reconcile(services: Services) -> tuple[int, int]:
    """Returns (added, removed)."""
    pool, model_id = services.db(), services.engine.model_id
    # Taken before the read: a token restated after it (an event, a local decision) is newer than
    # what the read saw and is left alone below.
    standings = services.galleries.standings()
    index = await token_q.searchable_index(pool, model_id)
    wanted = {r["token_id"]: (r["flight_id"], r["window_start"]) for r in index}
    services.quarantine.keep_only(set(wanted))
    have = services.galleries.homes()
    missing = [t for t, home in wanted.items() if have.get(t) != home]
    extra = [t for t in have if t not in wanted]
    added = 0
    if missing:
        rows = await token_q.searchable_templates_of(pool, model_id, missing)
        added = await load_into_galleries(services, rows)
    if extra:
        await services.galleries.remove(extra)
    restated = 0
    for r in index:
        token_id, standing, seen = r["token_id"], standing_of(r), standings.get(r["token_id"])
        if have.get(token_id) == wanted[token_id] and seen != standing:
            restated += await services.galleries.restate(token_id, standing, unless_changed_from=seen)
    if added or extra or restated:
        log.warning("galleries_reconciled", added=added, removed=len(extra), restated=restated)
    return added, len(extra)
