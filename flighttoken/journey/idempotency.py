"""``Idempotency-Key`` on the kiosk's POSTs (enrolment, opt-out): a retry gets the first answer again.

A key is honoured per device for :data:`TTL` from its first use. Its row keeps the operation, an
HMAC-SHA256 of the request body (never the body: an enrolment carries face images) and, once
answered, the status and response body. The MAC is keyed from the master key, which never enters
the database: a plain SHA-256 of an opt-out body (booking reference and document number) could be
reversed by hashing guesses. The same key with the same body replays that answer and writes
nothing; with another body (or on the other POST) it is 422 ``idempotency_key_reused``.

Replayed: every answer the handler gave, successes and its 4xx refusals (the same body meets the
same refusal; a refusal's audit row is not written twice). Not replayed: 5xx (``engine_busy``,
``database_unavailable``, bugs) and 408/429, which say "nothing was done, retry": the claim is
released and a retry with the same key executes afresh.

Concurrency: the first request claims the key with an in-progress row, one atomic statement across
instances, so two requests with one key never both execute. A second one on this instance waits for
the first's answer; on another instance it gets 409 ``idempotency_key_in_progress`` with
``Retry-After``, which the reference client retries. A claim left by an instance that died is taken
over after :data:`CLAIM_LEASE`. Expired rows are deleted by the privacy sweeper.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgspec
import structlog
from litestar import Request, Response

from flighttoken.crypto.keys import MasterKey, UnknownKekError
from flighttoken.db.queries import idempotency as q
from flighttoken.errors import (
    DATABASE_UNAVAILABLE,
    PROBLEM_JSON,
    Conflict,
    InvalidRequest,
    ServiceError,
    Unprocessable,
    service_error_body,
)
from flighttoken.services import Services

log = structlog.get_logger(__name__)

TTL = timedelta(hours=24)
# Far beyond any enrolment (the reference client gives up after 30 s): a claim this old without an
# answer belongs to an instance that died mid-request.
CLAIM_LEASE = timedelta(minutes=2)
HEADER = "idempotency-key"
_KEY = re.compile(r"[\x20-\x7e]{1,255}")  # printable ASCII, as the IETF draft's sf-string allows
_NOT_REPLAYED = frozenset({408, 429})
REPLAYED_HEADER = "Idempotent-Replayed"
MAC_PURPOSE = b"idempotency-body"

Execute = Callable[[], Awaitable[tuple[int, Any]]]
"""Runs the operation; returns (status, msgspec-encodable result). Raises ServiceError to refuse."""


def key_of(request: Request) -> str | None:
    """The request's Idempotency-Key, None without one; 400 when it is not one usable value."""
    values = request.headers.getall(HEADER, [])
    if not values:
        return None
    if len(values) > 1 or not _KEY.fullmatch(values[0]):
        raise InvalidRequest("send one Idempotency-Key of 1 to 255 printable ASCII characters",
                             code="invalid_idempotency_key")
    return values[0]


async def once(services: Services, request: Request, operation: str, execute: Execute) -> Response[Any]:
    """Run ``execute`` at most once per (device, Idempotency-Key), answering retries with its answer."""
    key = key_of(request)
    if key is None:
        status, result = await execute()
        return _answer(status, msgspec.json.encode(result))
    device_id: uuid.UUID = request.user.id
    body = await request.body()
    master = services.vault.master
    kek_id, digest = master.mac(MAC_PURPOSE, body)
    running, slot = services.idempotent_requests, (device_id, key)
    while True:
        first = running.get(slot)
        if first is not None:
            # The first request with this key runs here: wait for its answer, then read it.
            try:
                await asyncio.wait_for(first.wait(), CLAIM_LEASE.total_seconds())
            except TimeoutError:
                raise _in_progress() from None
            continue
        done = running[slot] = asyncio.Event()
        try:
            claim_id = uuid.uuid4()
            row = await q.claim(services.db(), device_id=device_id, key=key, operation=operation,
                                body_mac=digest, body_kek_id=kek_id, claim_id=claim_id, ttl=TTL,
                                lease=CLAIM_LEASE)
            if row is None:
                continue  # another instance's claim committed after our snapshot: read it now
            if row["claim"] == claim_id:
                return await _execute_claimed(services, request, device_id, key, claim_id, execute)
            if row["operation"] != operation or not _same_body(master, row, body, kek_id, digest):
                raise Unprocessable("this Idempotency-Key was used for another request; send a new key with a "
                                    "new request", code="idempotency_key_reused")
            if row["status"] is None:
                raise _in_progress()  # running on another instance
            log.info("idempotent_replay", operation=operation, status=row["status"])
            return _answer(row["status"], row["response"], replayed=True)
        finally:
            del running[slot]
            done.set()


def _same_body(master: MasterKey, row: Any, body: bytes, kek_id: str, digest: bytes) -> bool:
    if row["body_kek_id"] != kek_id:  # the master key rotated since the first request
        try:
            _, digest = master.mac(MAC_PURPOSE, body, row["body_kek_id"])
        except UnknownKekError:
            return False
    return hmac.compare_digest(row["body_mac"], digest)


def _in_progress() -> Conflict:
    return Conflict("a request with this Idempotency-Key is still running; retry shortly",
                    code="idempotency_key_in_progress", headers={"Retry-After": "1"})


async def _execute_claimed(services: Services, request: Request, device_id: uuid.UUID, key: str,
                           claim_id: uuid.UUID, execute: Execute) -> Response[Any]:
    ids = {"device_id": device_id, "key": key, "claim_id": claim_id}
    try:
        status, result = await execute()
    except ServiceError as exc:
        if exc.status < 500 and exc.status not in _NOT_REPLAYED:
            await _complete(services, ids, exc.status, msgspec.json.encode(service_error_body(exc, request)))
        else:
            await _release(services, ids)
        raise
    except BaseException:
        await asyncio.shield(_release(services, ids))
        raise
    body = msgspec.json.encode(result)
    await _complete(services, ids, status, body)
    return _answer(status, body)


async def _complete(services: Services, ids: dict[str, Any], status: int, body: bytes) -> None:
    try:
        await q.complete(services.db(), status=status, response=body, **ids)
    except DATABASE_UNAVAILABLE:
        # The operation is done and answered; a retry meets the claim, then after CLAIM_LEASE runs afresh.
        log.warning("idempotent_answer_not_recorded", status=status)


async def _release(services: Services, ids: dict[str, Any]) -> None:
    try:
        await q.release(services.db(), **ids)
    except DATABASE_UNAVAILABLE:
        log.warning("idempotency_claim_not_released")  # taken over after CLAIM_LEASE


def _answer(status: int, body: bytes, *, replayed: bool = False) -> Response[Any]:
    return Response(body, status_code=status, media_type=PROBLEM_JSON if status >= 400 else "application/json",
                    headers={REPLAYED_HEADER: "true"} if replayed else None)


async def expire(services: Services) -> int:
    """Delete keys past :data:`TTL` (the privacy sweeper's job); returns how many went."""
    return await q.expire(services.db(), TTL)
