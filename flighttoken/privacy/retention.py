"""Audit retention: audit, journey and authority audit events older than ``audit_retention_days`` are deleted.

Events are append-only by trigger; the one way out is a transaction that declares the retention
purge and its cutoff (at least a day old), and then only rows older than the cutoff go.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import structlog

from flighttoken.db.queries import audit
from flighttoken.db.queries import privacy as q
from flighttoken.services import Services

log = structlog.get_logger(__name__)
BATCH = 10_000


class RetentionReport(msgspec.Struct):
    cutoff: datetime | None
    deleted: dict[str, int]
    """Per admin-visible table (audit_events, journey_events)."""
    authority_deleted: int = 0
    """From the authority's own trail; reported only there, so no admin learns its volume."""


async def apply_retention(services: Services) -> RetentionReport:
    """Delete events past retention, in batches; audited when anything went. No-op when disabled."""
    days = services.settings.privacy.audit_retention_days
    if days <= 0:
        return RetentionReport(cutoff=None, deleted={})
    pool = services.db()
    cutoff = await q.database_now(pool) - timedelta(days=days)
    async with pool.acquire() as conn:
        deleted = {table: await _delete_all_older(conn, table, cutoff) for table in audit.PUBLIC_EVENT_TABLES}
        authority_deleted = await _delete_all_older(conn, audit.AUTHORITY_TABLE, cutoff)
    if any(deleted.values()):
        await audit.record(pool, actor="system", action="audit.retention", outcome="ok",
                           detail={"cutoff": cutoff.isoformat(), "retention_days": days, **deleted})
        log.info("audit_retention_applied", cutoff=cutoff.isoformat(), **deleted)
    if authority_deleted:
        # A watchlist.* action: recorded in the authority's table (audit.record routes it), never logged.
        await audit.record(pool, actor="system", action="watchlist.audit.retention", outcome="ok",
                           detail={"cutoff": cutoff.isoformat(), "retention_days": days, "deleted": authority_deleted})
    return RetentionReport(cutoff=cutoff, deleted=deleted, authority_deleted=authority_deleted)


async def _delete_all_older(conn, table: str, cutoff: datetime) -> int:
    total = 0
    while True:
        n = await audit.delete_older_than(conn, table, cutoff, BATCH)
        total += n
        if n < BATCH:
            return total
