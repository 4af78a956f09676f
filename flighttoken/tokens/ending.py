"""How a token ends: revoked (by staff, or an opt-out) or expired (its flight purged), in one statement.

Every path that ends tokens goes through :func:`end_tokens`, so each ends the same way: the templates
are deleted, the live tokens take their final state, time and reason, and the database forgets the
document's last four (trigger, migration 0010). What each caller adds around it (audit events, the
``tokens_removed`` sync event, purge receipts, gallery removal) stays with the caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from flighttoken.db.queries import tokens as q
from flighttoken.db.queries.tokens import Executor

# Only these may end; a token already revoked or expired keeps its first end.
LIVE_STATES = frozenset(q.LIVE_STATES)


@dataclass(frozen=True)
class Ended:
    """What :func:`end_tokens` changed, by flight: the tokens it ended and the tokens whose template it
    deleted (a template may go with a token that had already ended)."""

    tokens: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)
    templates: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)

    def token_ids(self) -> set[uuid.UUID]:
        return {t for ids in self.tokens.values() for t in ids}

    def template_token_ids(self) -> set[uuid.UUID]:
        return {t for ids in self.templates.values() for t in ids}


async def end_tokens(conn: Executor, reasons: Mapping[uuid.UUID, str], *, state: Literal["revoked", "expired"],
                     by: Literal["token", "flight"] = "token") -> Ended:
    """End the live tokens named in ``reasons`` (token id -> end_reason, or with ``by="flight"`` flight
    id -> end_reason for all its tokens) and delete their templates. Run it inside the caller's
    transaction, with the tokens (or the flights) locked."""
    rows = await q.end_tokens(conn, dict(reasons), state=state, by=by)
    return Ended(tokens={r["flight_id"]: list(r["ended"]) for r in rows if r["ended"]},
                 templates={r["flight_id"]: list(r["templates_deleted"]) for r in rows if r["templates_deleted"]})
