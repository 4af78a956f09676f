"""The DCS deliverer: one background task per instance posting due outbox events to airlines.

Each pass claims up to ``dcs_batch`` due events with a lease (``FOR UPDATE SKIP LOCKED``: instances
never claim the same event at once) and posts them concurrently, outside any transaction. A 2xx
answer marks an event delivered; anything else (an error status, a timeout, a refused connection)
schedules the next attempt after an exponential backoff with jitter, or dead-letters it once
``dcs_max_attempts`` are spent. An instance killed mid-delivery leaves its claims to lapse: another
instance retries them after ``dcs_lease_s``. Delivery is at least once; receivers dedupe on the event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import httpx
import msgspec
import structlog

from flighttoken.crypto import DecryptionError, MasterKey, UnknownKekError, WrappedKey
from flighttoken.db.queries import dcs as q
from flighttoken.dcs import signing
from flighttoken.settings import DcsSettings

log = structlog.get_logger(__name__)
RETENTION_EVERY_S = 3600.0
USER_AGENT = "FlightToken-DCS/1"


class Envelope(msgspec.Struct):
    """The body an airline receives."""

    id: uuid.UUID
    type: str
    airline: str
    created_at: str
    data: msgspec.Raw


def backoff_s(settings: DcsSettings, attempts: int) -> float:
    """Wait before the next attempt after ``attempts`` failures: base * 2^(n-1), capped, then drawn
    from its upper half ("equal jitter") so retries of many events spread out but never come early."""
    ceiling = min(settings.dcs_backoff_cap_s, settings.dcs_backoff_base_s * 2 ** min(attempts - 1, 30))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class Deliverer:
    pool: asyncpg.Pool
    master: MasterKey
    settings: DcsSettings
    _task: asyncio.Task[None] | None = None
    _client: httpx.AsyncClient | None = None
    _last_retention: float = float("-inf")

    async def start(self) -> None:
        # No redirects: a webhook answers itself, and a redirect could point the body anywhere.
        self._client = httpx.AsyncClient(timeout=self.settings.dcs_timeout_s, follow_redirects=False,
                                         headers={"User-Agent": USER_AGENT})
        self._task = asyncio.create_task(self._loop(), name="dcs-deliverer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _loop(self) -> None:
        while True:
            try:
                claimed = await self.deliver_once()
            except Exception:  # a bad pass must not end the task; leases make every event retried
                log.exception("dcs_delivery_pass_failed")
                claimed = 0
            if claimed < self.settings.dcs_batch:  # a full batch: more may be due at once
                await asyncio.sleep(self.settings.dcs_delivery_interval_s)

    async def deliver_once(self) -> int:
        """Claim and post one batch; how many events were claimed."""
        if time.monotonic() - self._last_retention >= RETENTION_EVERY_S:
            self._last_retention = time.monotonic()
            await q.forget_delivered(self.pool, timedelta(days=self.settings.dcs_retention_days))
        claim_id = uuid.uuid4()
        rows = await q.claim(self.pool, self.settings.dcs_batch, timedelta(seconds=self.settings.dcs_lease_s),
                             claim_id)
        if rows:
            await asyncio.gather(*(self._deliver(row, claim_id) for row in rows))
        return len(rows)

    async def _deliver(self, row: asyncpg.Record, claim_id: uuid.UUID) -> None:
        event_id, airline = row["id"], row["airline"]
        try:
            error = await self._post(row)
        except Exception as exc:  # never leave a claim to its lease when we know it failed
            log.exception("dcs_delivery_error", event_id=str(event_id))
            error = f"internal error: {type(exc).__name__}"
        if error is None:
            await q.delivered(self.pool, event_id, claim_id)
            log.info("dcs_event_delivered", event_id=str(event_id), airline=airline, kind=row["kind"],
                     attempts=row["attempts"])
            return
        wait = backoff_s(self.settings, row["attempts"])
        status = await q.failed(self.pool, event_id, claim_id, error, timedelta(seconds=wait),
                                self.settings.dcs_max_attempts)
        log.warning("dcs_delivery_failed", event_id=str(event_id), airline=airline, kind=row["kind"],
                    attempts=row["attempts"], error=error, status=status,
                    retry_in_s=round(wait, 1) if status == "pending" else None)

    async def _post(self, row: asyncpg.Record) -> str | None:
        """None when the receiver took the event; else why not."""
        hook = await q.webhook_secret(self.pool, row["airline"])
        if hook is None:
            return "the airline has no webhook"
        try:
            secret = signing.unwrap_secret(self.master, row["airline"],
                                           WrappedKey(hook["secret_kek_id"], bytes(hook["secret_wrapped"])))
        except (UnknownKekError, DecryptionError) as exc:
            return f"webhook secret unreadable: {exc}"
        body = msgspec.json.encode(Envelope(id=row["id"], type=row["kind"], airline=row["airline"],
                                            created_at=row["created_at"].isoformat(),
                                            data=msgspec.Raw(row["payload"].encode())))
        headers = {"Content-Type": "application/json", signing.EVENT_ID_HEADER: str(row["id"]),
                   signing.EVENT_TYPE_HEADER: row["kind"], signing.SIGNATURE_HEADER: signing.sign(secret, body)}
        assert self._client is not None, "deliverer used before start()"
        try:
            async with asyncio.timeout(self.settings.dcs_timeout_s):  # httpx's timeout is per read, not in all
                response = await self._client.post(hook["url"], content=body, headers=headers)
        except TimeoutError:
            return f"no answer within {self.settings.dcs_timeout_s:g} s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:200]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"


async def start_deliverer(pool: asyncpg.Pool, master: MasterKey, settings: DcsSettings,
                          stack: contextlib.AsyncExitStack) -> Deliverer:
    """Start the deliverer; the exit stack stops it (before the pool closes)."""
    deliverer = Deliverer(pool, master, settings)
    await deliverer.start()
    stack.push_async_callback(deliverer.stop)
    return deliverer
