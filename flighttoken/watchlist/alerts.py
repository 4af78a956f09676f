"""Alerts: officer referrals raised by screening, streamed to officers, resolved by them.

Two kinds share the table, the stream and the API: ``watchlist`` (a hit) and ``random`` (a random
secondary referral, the hit's cover: see ``screening``). A confirmed alert keeps its hold on the
token; a false alarm or a cleared passenger releases it (the token stays held while any other
hold — another alert, a staff hold — is in force). Every step is audited under ``watchlist.*``.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import structlog
from litestar.response import ServerSentEventMessage

from flighttoken.db.connection import one
from flighttoken.db.queries import audit
from flighttoken.db.queries import watchlist as q
from flighttoken.devices.model import Device
from flighttoken.errors import Conflict, NotFound
from flighttoken.services import Services
from flighttoken.sync.events import CHANNEL
from flighttoken.tokens import holds
from flighttoken.watchlist.schemas import Alert, Location, MatchedToken, Resolution

log = structlog.get_logger(__name__)
_encode = msgspec.json.Encoder().encode


def to_alert(row: asyncpg.Record) -> Alert:
    token = None
    if row["token_id"] is not None:
        name = f"{row['surname']}, {row['given_names']}".strip(", ") if row["surname"] is not None else None
        token = MatchedToken(token_id=row["token_id"], flight_id=row["flight_id"], flight=row["flight"], name=name)
    score = row["score"]
    return Alert(id=row["id"], kind=row["kind"], at=row["at"], subject_id=row["subject_id"],
                 case_reference=row["case_reference"],
                 reason_code=row["reason_code"], device_id=row["device_id"], device_name=row["device_name"],
                 touchpoint=row["touchpoint"],
                 location=Location(terminal=row["terminal"], gate=row["gate"], lounge_id=row["lounge_id"]),
                 score=None if score is None else round(float(score), 4), token=token, status=row["status"],
                 resolved_at=row["resolved_at"], resolved_by=row["resolved_by"], note=row["note"])


async def raise_alert(services: Services, device: Device, kind: str | None, subject_id: uuid.UUID | None,
                      score: float | None, token_id: uuid.UUID | None) -> int | None:
    """Record the referral (``kind`` None: write nothing, in the same statement), hold the token (if
    any) and audit it; officers are notified off the caller's path."""
    alert_id = await q.raise_alert(services.db(), kind=kind, subject_id=subject_id, device_id=device.id,
                                   touchpoint=device.kind.value, terminal=device.terminal, gate=device.gate,
                                   lounge_id=device.lounge_id, score=score, token_id=token_id,
                                   actor="system:watchlist", channel=CHANNEL, origin=services.instance_id)
    if alert_id is not None:
        publish_soon(services, alert_id)
    return alert_id


_publishing: set[asyncio.Task[None]] = set()


def publish_soon(services: Services, alert_id: int) -> None:
    """Stream a committed alert to this instance's officers without the touchpoint waiting for it:
    reading the alert back is a round trip only a referral would make. Not logged in the request's
    context: a log line carrying the touchpoint request's id would tie the alert to its decision."""
    task = asyncio.get_running_loop().create_task(_publish_quietly(services, alert_id), context=contextvars.Context())
    _publishing.add(task)
    task.add_done_callback(_publishing.discard)


async def _publish_quietly(services: Services, alert_id: int) -> None:
    try:
        await publish(services, alert_id)
    except Exception:
        # The alert is committed and a reconnecting console replays it; the touchpoint must not see
        # an error that only a referral can cause.
        log.exception("alert_stream_publish_failed")


async def publish(services: Services, alert_id: int) -> None:
    """Hand a committed alert to this instance's streams (also the entry for other instances' alerts)."""
    row = await q.alert(services.db(), alert_id)
    if row is not None:
        services.watchlist.hub.publish(to_alert(row))


async def get(services: Services, alert_id: int) -> Alert:
    row = await q.alert(services.db(), alert_id)
    if row is None:
        raise NotFound("no such alert", code="alert_not_found")
    return to_alert(row)


async def list_alerts(services: Services, status: str, limit: int, after: int) -> list[Alert]:
    return [to_alert(r) for r in await q.alerts(services.db(), status=status, limit=limit, after=after)]


async def resolve(services: Services, device: Device, alert_id: int, res: Resolution) -> Alert:
    """Confirm or dismiss an alert. Repeating the same outcome is a no-op; changing it is a conflict."""
    async with services.db().acquire() as conn, conn.transaction():
        row = await q.alert(conn, alert_id, for_update=True)
        if row is None:
            raise NotFound("no such alert", code="alert_not_found")
        if row["status"] == res.outcome:
            return to_alert(row)
        if row["status"] != "open":
            raise Conflict(f"the alert was already resolved as {row['status']}", code="alert_already_resolved")
        await q.resolve(conn, alert_id, status=res.outcome, resolved_by=res.resolved_by, device_id=device.id,
                        note=res.note)
        released = []
        if res.outcome in ("false_alarm", "cleared"):
            released = await holds.release_alert_holds(conn, alert_id, f"device:{device.id}")
        await audit.record(conn, actor=f"device:{device.id}", action="watchlist.alert.resolve", outcome="ok",
                           detail={"alert_id": alert_id, "outcome": res.outcome, "holds_released": len(released)})
        row = one(await q.alert(conn, alert_id))  # the alert just resolved
    log.info("watchlist_alert_resolved", alert_id=alert_id, outcome=res.outcome)
    return to_alert(row)


async def stream(services: Services, device: Device,
                 last_event_id: int | None) -> AsyncIterator[ServerSentEventMessage]:
    """Server-sent events: each new alert as ``event: alert``, ``id: <alert id>``.

    With ``Last-Event-ID`` the alerts raised since are replayed first, so a console that
    reconnects (network, instance restart, the stream's own time limit) misses nothing. The stream
    ends as soon as its device's key is disabled or rotated (``AlertHub.end_streams_of``).
    """
    settings = services.settings
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.watchlist.alert_stream_max_s
    with services.watchlist.hub.subscribe(device.id) as sub:
        yield ServerSentEventMessage(data=None, comment="alerts", retry=2000)
        # Subscribed before the replay query, so an alert committed meanwhile arrives both ways.
        replayed: set[int] = set()
        if last_event_id is not None:
            for row in await q.alerts_after(services.db(), last_event_id):
                replayed.add(row["id"])
                yield _message(to_alert(row))
        while not sub.lagged and not sub.ended and (remaining := deadline - loop.time()) > 0:
            try:
                alert = await asyncio.wait_for(sub.queue.get(),
                                               min(settings.watchlist.alert_stream_heartbeat_s, remaining))
            except TimeoutError:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
                continue
            if alert is None or sub.ended:  # shutting down, or the key changed
                return
            if alert.id not in replayed:
                yield _message(alert)


def _message(alert: Alert) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=_encode(alert).decode(), event="alert", id=alert.id)
