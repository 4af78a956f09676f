"""Keeping every instance's watchlist and alert streams in step (flighttoken.sync events).

``alert``: another instance raised an alert; stream it to this instance's officers too.
``watchlist_changed``: subjects were added or removed elsewhere; reload just those.
``reconcile`` repairs whatever notifications were missed (run by the watchlist sweep).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog

from flighttoken.db.queries import watchlist as q
from flighttoken.services import Services
from flighttoken.sync.events import SyncEvent
from flighttoken.watchlist import alerts, service

log = structlog.get_logger(__name__)


async def on_alert(services: Services, event: SyncEvent) -> None:
    await alerts.publish(services, int(event.payload["alert_id"]))


async def on_watchlist_changed(services: Services, event: SyncEvent) -> None:
    ids = [uuid.UUID(s) for s in event.payload.get("subject_ids", "").split(",") if s]
    await reload_subjects(services, ids)


async def reload_subjects(services: Services, subject_ids: list[uuid.UUID]) -> None:
    """Bring these subjects in memory in line with PostgreSQL: add the searchable, drop the rest."""
    pool, model_id = services.db(), services.engine.model_id
    rows = await q.searchable_templates(pool, model_id, datetime.now(UTC), subject_ids)
    entries = await service.open_rows(services, rows)
    by_subject: dict[uuid.UUID, list] = {}
    for subject_id, n, vector, expires_at in entries:
        by_subject.setdefault(subject_id, []).append((n, vector, expires_at))
    for subject_id, photos in by_subject.items():
        await services.watchlist.gallery.add(subject_id, [(n, v) for n, v, _ in photos], photos[0][2])
    gone = set(subject_ids) - set(by_subject)
    if gone:
        await services.watchlist.gallery.remove(gone)


async def reconcile(services: Services) -> tuple[int, int]:
    """Compare subject ids in memory with PostgreSQL; load the missing, drop the extra."""
    wanted = await q.searchable_subject_ids(services.db(), services.engine.model_id, datetime.now(UTC))
    quarantine = services.quarantine.watchlist  # forget removed or expired subjects
    quarantine.intersection_update({k for k in quarantine if k[0] in wanted})
    have = set(services.watchlist.gallery.subjects())
    missing, extra = wanted - have, have - wanted
    if missing or extra:
        await reload_subjects(services, sorted(missing | extra))
        log.warning("watchlist_reconciled", added=len(missing), removed=len(extra))
    return len(missing), len(extra)


def register(services: Services) -> None:
    """Subscribe to the watchlist's event kinds on this instance's sync listener (if it runs)."""
    if services.sync is not None:
        services.sync.on("alert", on_alert)
        services.sync.on("watchlist_changed", on_watchlist_changed)
