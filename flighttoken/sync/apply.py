"""Applying another instance's changes to this instance's galleries.

Every function here is idempotent: applying an event twice, or an event this instance already
reflects, leaves the galleries as they were. That is what lets reconciliation and notifications
overlap freely.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import structlog

from flighttoken.db.queries import tokens as token_q
from flighttoken.executor import run_blocking
from flighttoken.galleries.purpose import standing_of
from flighttoken.galleries.quarantine import open_templates, set_aside
from flighttoken.services import Services
from flighttoken.sync.events import SyncEvent
from flighttoken.vocabulary import TokenState

log = structlog.get_logger(__name__)
Handler = Callable[[Services, SyncEvent], Awaitable[None]]


async def load_into_galleries(services: Services, rows: Sequence) -> int:
    """Decrypt template rows (token_id, flight_id, window_start, sealed) and add them; a row that
    fails to decrypt is quarantined (galleries/quarantine.py), the others still load."""
    keys: dict[uuid.UUID, bytes] = {}
    for flight_id in {r["flight_id"] for r in rows}:
        dek = await services.vault.flight_key(flight_id)
        if dek is not None:
            keys[flight_id] = dek
    opened, unreadable = await run_blocking(open_templates, rows, keys, services.engine.model_id)
    await set_aside(services, unreadable, where="sync")
    services.quarantine.released(t for t, *_ in opened)
    standing = {r["token_id"]: standing_of(r) for r in rows}
    for token_id, flight_id, window, vector in opened:
        await services.galleries.add(token_id, flight_id, window, vector, standing[token_id])
    return len(opened)


async def token_upserted(services: Services, event: SyncEvent) -> None:
    rows = await token_q.searchable_templates_of(services.db(), services.engine.model_id, event.token_ids)
    await load_into_galleries(services, rows)
    gone = set(event.token_ids) - {r["token_id"] for r in rows}
    if gone:  # e.g. revoked again before we got here
        await services.galleries.remove(gone)


async def token_moved(services: Services, event: SyncEvent) -> None:
    """A decision moved a token (cleared, boarded; journey_q.record_decision publishes this in the
    decision's own statement) or a re-enrolment changed its booking: move it between purpose
    galleries, from memory. ``payload`` carries the new state and, from a re-enrolment, the lounge
    eligibility ("True"/"False")."""
    state = TokenState(event.payload["state"])
    lounge = event.payload.get("lounge_eligible")
    for token_id in event.token_ids:
        await restate(services, token_id, state=state, lounge_eligible=None if lounge is None else lounge == "True")


async def restate(services: Services, token_id: uuid.UUID, *, state: TokenState | None = None,
                  lounge_eligible: bool | None = None) -> None:
    """Change part of a token's standing and move it between purpose galleries. A token this
    instance does not know (not loaded yet, or quarantined) is left to its add or the reconcile."""
    old = services.galleries.standing(token_id)
    if old is None:
        return
    changes = {"state": state, "lounge_eligible": lounge_eligible}
    await services.galleries.restate(token_id, replace(old, **{k: v for k, v in changes.items() if v is not None}))


async def tokens_removed(services: Services, event: SyncEvent) -> None:
    await services.galleries.remove(event.token_ids)


async def flight_closed(services: Services, event: SyncEvent) -> None:
    assert event.flight_id is not None
    await services.galleries.drop_flight(event.flight_id)
    services.vault.forget_flight(event.flight_id)


async def flight_moved(services: Services, event: SyncEvent) -> None:
    """A delay moved the flight to another departure window: re-home its tokens."""
    assert event.flight_id is not None
    rows = await token_q.searchable_templates_of_flight(services.db(), services.engine.model_id, event.flight_id)
    await load_into_galleries(services, rows)


async def device_changed(services: Services, event: SyncEvent) -> None:
    """Another instance disabled or rotated a key: drop it from the key cache, end its streams."""
    services.device_changed(uuid.UUID(event.payload["device_id"]))


HANDLERS: dict[str, Handler] = {
    "device_changed": device_changed,
    "token_upserted": token_upserted,
    "tokens_removed": tokens_removed,
    "token_moved": token_moved,
    "flight_closed": flight_closed,
    "flight_moved": flight_moved,
}
