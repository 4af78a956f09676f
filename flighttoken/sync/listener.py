"""LISTEN on a dedicated connection; apply other instances' events; reconcile on (re)connect and
periodically. If the connection drops (database restart), it reconnects with backoff and
reconciles, because notifications sent while it was away are lost."""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import asyncpg
import structlog

from flighttoken.db.connection import Connection
from flighttoken.errors import DATABASE_UNAVAILABLE
from flighttoken.services import Services
from flighttoken.sync.apply import HANDLERS, Handler
from flighttoken.sync.events import CHANNEL, SyncEvent, decode_event
from flighttoken.sync.reconcile import reconcile

log = structlog.get_logger(__name__)


class SyncListener:
    def __init__(self, services: Services, reconcile_every_s: float) -> None:
        self.services = services
        self.reconcile_every_s = reconcile_every_s
        self.handlers: dict[str, Handler] = dict(HANDLERS)
        self._events: asyncio.Queue[SyncEvent] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()
        self.caught_up = asyncio.Event()
        """Set once the first reconcile after connecting has run."""

    def on(self, kind: str, handler: Handler) -> None:
        """Let another context (e.g. the watchlist) react to its own event kinds."""
        self.handlers[kind] = handler

    async def start(self, catch_up_within_s: float = 10.0) -> None:
        """Start listening and wait (bounded) for the first reconcile: an instance reports ready only
        after catching up on changes other instances made while it was rebuilding."""
        self._tasks = [asyncio.create_task(self._listen(), name="sync-listen"),
                       asyncio.create_task(self._apply(), name="sync-apply")]
        try:
            await asyncio.wait_for(self.caught_up.wait(), timeout=catch_up_within_s)
        except TimeoutError:
            log.warning("sync_catch_up_pending", waited_s=catch_up_within_s)  # the listener keeps trying

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = decode_event(payload)
        except Exception:
            log.warning("sync_event_unreadable")
            return
        if event.origin != self.services.instance_id:
            self._events.put_nowait(event)

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            conn: Connection | None = None
            try:
                conn = cast(asyncpg.Connection, await asyncpg.connect(self.services.dsn, timeout=5))
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                if self.caught_up.is_set():
                    # Back after an outage: a device_changed event may be among the lost ones, so no
                    # cached key or open alert stream is trusted (consoles reconnect with Last-Event-ID).
                    self.services.key_cache.clear()
                    self.services.watchlist.hub.close()
                self.connected.set()
                backoff = 0.2
                await reconcile(self.services)  # catch up on anything sent while we were away
                self.caught_up.set()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=self.reconcile_every_s)
                    if not lost.is_set():
                        await reconcile(self.services)
            except asyncio.CancelledError:
                raise
            except (*DATABASE_UNAVAILABLE, asyncpg.PostgresError) as exc:
                log.warning("sync_listener_disconnected", error=type(exc).__name__, retry_in_s=backoff)
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _apply(self) -> None:
        while True:
            event = await self._events.get()
            handler = self.handlers.get(event.kind)
            if handler is None:
                continue
            try:
                await handler(self.services, event)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The periodic reconcile repairs whatever this event failed to apply.
                log.exception("sync_event_failed", kind=event.kind)
