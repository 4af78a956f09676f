"""Airlines' webhooks and their dead letters, over the admin API. Every change is audited.

Admin keys set, rotate and delete a webhook and re-drive dead letters. An airline_ops key may read
its own airline's webhook (never the secret) and dead letters; another airline's is "not found".
The secret is returned once, by the call that created or rotated it, and is never logged or audited.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import msgspec
import structlog

from flighttoken.db.queries import audit
from flighttoken.db.queries import dcs as q
from flighttoken.dcs.schemas import DeadLetter, WebhookConfig, WebhookView
from flighttoken.dcs.signing import new_secret
from flighttoken.devices.model import Device
from flighttoken.errors import InvalidRequest, NotFound
from flighttoken.flights.scope import can_see
from flighttoken.flights.service import actor_of
from flighttoken.services import Services
from flighttoken.vocabulary import DcsEvent

log = structlog.get_logger(__name__)
_AIRLINE = re.compile(r"[A-Z0-9]{2,3}")


def check_airline(airline: str) -> str:
    if not _AIRLINE.fullmatch(airline):
        raise InvalidRequest("an airline code is 2 or 3 capital letters or digits", code="invalid_airline")
    return airline


def check_url(services: Services, url: str) -> str:
    allowed = ("https",) if services.settings.production else ("https", "http")
    try:
        parts = urlsplit(url)
        _ = parts.port  # a bad port raises here, not at the first delivery
        host = parts.hostname
    except ValueError:
        host = None
    if host is None or parts.scheme not in allowed:
        raise InvalidRequest(f"the webhook URL must be {' or '.join(allowed)} with a host", code="invalid_webhook_url")
    if parts.username or parts.password:
        # Credentials in a URL would be stored and shown in clear; the signature authenticates us.
        raise InvalidRequest("the webhook URL must not carry a user name or password", code="invalid_webhook_url")
    return url


def _not_found() -> NotFound:
    return NotFound("this airline has no webhook", code="webhook_not_found")


async def put(services: Services, actor: Device, airline: str, config: WebhookConfig) -> WebhookView:
    check_airline(airline)
    url = check_url(services, config.url)
    async with services.db().acquire() as conn, conn.transaction():
        await q.lock_airline(conn, airline)
        exists = await q.webhook(conn, airline) is not None
        secret, wrapped = (new_secret(services.vault.master, airline) if config.rotate_secret or not exists
                           else (None, None))
        row = await q.upsert_webhook(conn, airline, url, wrapped.kek_id if wrapped else None,
                                     wrapped.wrapped if wrapped else None)
        await audit.record(conn, actor=actor_of(actor), action="dcs.webhook_set", outcome="ok",
                           detail={"airline": airline, "url": url, "new_secret": secret is not None})
    log.info("dcs_webhook_set", airline=airline, new_secret=secret is not None)
    return WebhookView(airline=row["airline"], url=row["url"], created_at=row["created_at"],
                       updated_at=row["updated_at"], secret=secret)


async def get(services: Services, viewer: Device, airline: str) -> WebhookView:
    check_airline(airline)
    row = await q.webhook(services.db(), airline) if can_see(viewer, airline) else None
    if row is None:
        raise _not_found()
    return WebhookView(airline=row["airline"], url=row["url"], created_at=row["created_at"],
                       updated_at=row["updated_at"])


async def delete(services: Services, actor: Device, airline: str) -> None:
    """Pending events of the airline are dead-lettered at their next attempt (no webhook to post to)."""
    check_airline(airline)
    async with services.db().acquire() as conn, conn.transaction():
        if not await q.delete_webhook(conn, airline):
            raise _not_found()
        await audit.record(conn, actor=actor_of(actor), action="dcs.webhook_delete", outcome="ok",
                           detail={"airline": airline})


async def dead_letters(services: Services, viewer: Device, airline: str | None, limit: int) -> list[DeadLetter]:
    if airline is not None:
        check_airline(airline)
        if not can_see(viewer, airline):
            return []
    elif not can_see(viewer, "*"):  # an airline_ops key: its own airline only
        airline = viewer.airline or "-"
    if not 1 <= limit <= 1000:
        raise InvalidRequest("limit must be 1-1000", code="invalid_limit")
    rows = await q.dead_letters(services.db(), airline, limit)
    return [DeadLetter(id=r["id"], airline=r["airline"], type=DcsEvent(r["kind"]),
                       data=msgspec.Raw(r["payload"].encode()), created_at=r["created_at"], attempts=r["attempts"],
                       last_error=r["last_error"], dead_at=r["dead_at"]) for r in rows]


async def redrive(services: Services, actor: Device, event_id: uuid.UUID) -> None:
    async with services.db().acquire() as conn, conn.transaction():
        if not await q.redrive(conn, event_id, None):
            raise NotFound("no dead-lettered event has this id", code="dead_letter_not_found")
        await audit.record(conn, actor=actor_of(actor), action="dcs.redrive", outcome="ok",
                           detail={"event_id": str(event_id)})
    log.info("dcs_event_redriven", event_id=str(event_id))
