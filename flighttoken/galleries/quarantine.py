"""Template rows that fail to open are set aside: one bad row never stops an instance.

A sealed template AES-GCM refuses (corrupt or truncated ciphertext, or another row's: the token id
is part of its associated data) is one passenger's problem, not the airport's. The row is skipped
and its token id logged; it is counted in ``/metrics`` and listed in ``/health/ready`` (the instance
stays ready), audited, and its token is held for staff (``template_unreadable``), so airline staff
see it held and any touchpoint that still knows the face says ``see_officer``. A row that opens
again later (a restored backup, a new enrolment) leaves quarantine by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np
import structlog

from flighttoken.crypto.sealing import DecryptionError
from flighttoken.db.queries import quarantine as quarantine_q
from flighttoken.errors import DATABASE_UNAVAILABLE
from flighttoken.privacy.vault import TemplateVault

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class Quarantine:
    """This instance's set-aside rows: passenger tokens and watchlist (subject, photo) templates."""

    tokens: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # token -> flight
    watchlist: set[tuple[uuid.UUID, int]] = field(default_factory=set)

    def released(self, token_ids: Iterable[uuid.UUID]) -> None:
        """These tokens' templates opened: out of quarantine."""
        for t in token_ids:
            self.tokens.pop(t, None)

    def keep_only(self, token_ids: set[uuid.UUID]) -> None:
        """Forget tokens that no longer belong in a gallery (revoked, purged)."""
        for t in [t for t in self.tokens if t not in token_ids]:
            del self.tokens[t]


def open_templates(rows: Sequence[Any], keys: dict[uuid.UUID, bytes],
                   model_id: str) -> tuple[list[tuple[uuid.UUID, uuid.UUID, Any, np.ndarray]], list[Any]]:
    """Open (token_id, flight_id, window_start, sealed) rows whose flight key is in ``keys`` (a flight
    without one is being purged). Blocking. Returns (opened rows, rows that failed to open)."""
    opened, bad = [], []
    for r in rows:
        dek = keys.get(r["flight_id"])
        if dek is None:
            continue
        try:
            vector = TemplateVault.open_template(dek, r["token_id"], model_id, r["sealed"])
        except DecryptionError:
            bad.append(r)
            continue
        opened.append((r["token_id"], r["flight_id"], r["window_start"], vector))
    return opened, bad


async def set_aside(services: Any, rows: Sequence[Any], *, where: str) -> None:
    """Quarantine passenger template rows that failed to open: log, count, hold and audit each
    (once per instance; a reconcile finding the same row again stays quiet)."""
    quarantine: Quarantine = services.quarantine
    for r in rows:
        token_id, flight_id = r["token_id"], r["flight_id"]
        if token_id in quarantine.tokens:
            continue
        quarantine.tokens[token_id] = flight_id
        log.error("template_quarantined", token_id=str(token_id), flight_id=str(flight_id), where=where,
                  reason="template row failed to decrypt; token held for staff")
        try:
            async with services.db().acquire() as conn, conn.transaction():
                await quarantine_q.hold_unreadable(conn, token_id, instance=services.instance_id)
        except (*DATABASE_UNAVAILABLE, asyncpg.PostgresError):
            # Skipped all the same; the next reconcile meets the row again and retries the record.
            quarantine.tokens.pop(token_id, None)
            log.exception("template_quarantine_not_recorded", token_id=str(token_id))
