"""Purge after departure by crypto-shredding.

A flight's templates are sealed under its own data key (DEK), kept wrapped in the key store
(``flighttoken/db/keystore.py``), a database of its own. The purge destroys that key first, so every
copy of the ciphertext becomes noise at that moment: replicas, WAL, and every dump of the service
database, taken before the purge or after (none of them ever held the key; physical backups too
once the key store is on its own cluster). Only then are the rows deleted. Order, each step durable
before the next:

  1. mark the purge started (``purge_receipts`` row, first trigger wins)
  2. delete the key in the key store, leaving a tombstone (committed there: the shred itself)
  3. forget the DEK from this instance's cache
  4. delete the flight's key marker (``flight_keys``: from now on no template can be stored for it),
     name the destroyed key on the receipt, announce ``flight_closed`` (one transaction)
  5. delete the template rows, expire the live tokens (one transaction)
  6. drop the flight from this instance's galleries (:func:`forget_flight_locally`)
  7. close the receipt and write the ``flight.purge`` audit event (one transaction, exactly once)

Every step is idempotent, so a purge interrupted anywhere (crash, kill -9, lost database) is
finished by running it again: the sweeper does that at start-up and on every pass. A key already
gone from the key store (an earlier run got that far) is simply found gone; its tombstone still
names it on the receipt. Each step takes many flights at once (a window purged by the sweeper costs
a handful of commits, not hundreds).

What is left: a backup of the *key store* taken before the purge still holds the key. That is why
the key store is kept out of long-retention backups (ops/README.md); retiring the master key that
wrapped it (after ``flighttoken keys rotate``) makes such a copy useless too.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import structlog

from flighttoken.db.queries import audit
from flighttoken.db.queries import privacy as q
from flighttoken.errors import NotFound
from flighttoken.flights.model import Flight, FlightState
from flighttoken.privacy.schemas import PurgeReceipt
from flighttoken.services import Services
from flighttoken.sync.events import publish
from flighttoken.tokens.ending import end_tokens

log = structlog.get_logger(__name__)

TRIGGERS = frozenset({"departed", "cancelled", "grace_elapsed"})
# tokens.end_reason for the tokens a purge ends, by what triggered it.
END_REASONS = {"departed": "flight_departed", "cancelled": "flight_cancelled", "grace_elapsed": "departure_passed"}


async def on_flight_closed(services: Services, flight: Flight) -> None:
    """The flight departed or was cancelled (already committed): purge it now.

    A purge that fails part way is left to the sweeper to finish; the state change stands, and the
    flight leaves this instance's galleries whatever happens.
    """
    trigger = "cancelled" if flight.state is FlightState.CANCELLED else "departed"
    try:
        await purge_flight(services, flight.id, trigger)
    except Exception:
        log.exception("purge_failed_will_resume", flight=flight.code)
        await forget_flight_locally(services, flight.id)


async def forget_flight_locally(services: Services, flight_id: uuid.UUID) -> int:
    """Drop everything this instance holds in memory for a purged flight: its DEK and its gallery
    entries. Idempotent; what another instance does on this purge's ``flight_closed`` sync event."""
    services.vault.forget_flight(flight_id)
    return await services.galleries.drop_flight(flight_id)


async def purge_flight(services: Services, flight_id: uuid.UUID, trigger: str, *,
                       initiated_by: str = "system") -> PurgeReceipt:
    """Purge (or finish purging) one flight's biometric data; returns its receipt. Idempotent."""
    receipts = await purge_flights(services, {flight_id: trigger}, initiated_by=initiated_by)
    if not receipts:
        raise NotFound("no such flight", code="flight_not_found")
    return receipts[0]


async def purge_flights(services: Services, triggers: Mapping[uuid.UUID, str], *,
                        initiated_by: str = "system") -> list[PurgeReceipt]:
    """Purge several flights (a departure window) together: the steps above, each one transaction
    for all of them. Receipts of the flights that exist, in no particular order. Idempotent."""
    unknown = set(triggers.values()) - TRIGGERS
    if unknown:
        raise ValueError(f"unknown purge trigger {sorted(unknown)[0]!r}")
    started = await q.begin_purges(services.db(), dict(triggers), initiated_by)
    pending = {r["flight_id"]: r["trigger"] for r in started if r["completed_at"] is None}
    if pending:
        await _destroy_keys(services, sorted(pending))
        await _delete_biometrics(services, {f: END_REASONS[t] for f, t in pending.items()})
    dropped = {r["flight_id"]: await forget_flight_locally(services, r["flight_id"]) for r in started}
    receipts, closed = await _complete(services, [r["flight_id"] for r in started])
    for r in receipts:
        if r.flight_id in closed:
            log.info("flight_purged", flight=r.flight, trigger=r.trigger, key_id=str(r.key_id),
                     templates_deleted=r.templates_deleted, tokens_ended=r.tokens_ended,
                     gallery_entries_dropped=dropped[r.flight_id])
    return receipts


async def _destroy_keys(services: Services, flight_ids: list[uuid.UUID]) -> None:
    # The shred: committed in the key store before the service database changes at all.
    destroyed = await services.vault.keystore.destroy_flight_keys(flight_ids)
    for flight_id in flight_ids:
        services.vault.forget_flight(flight_id)
    async with services.db().acquire() as conn, conn.transaction():
        # Waits for enrolments still holding the flight; templates they stored go in the next step.
        await q.lock_flights(conn, flight_ids)
        await q.delete_flight_keys(conn, flight_ids)
        await q.record_keys_destroyed(conn, flight_ids, destroyed)
        # Sent at commit: other instances forget the keys and drop the flights' galleries.
        for flight_id in flight_ids:
            await publish(conn, services.instance_id, "flight_closed", flight_id=flight_id)


async def _delete_biometrics(services: Services, end_reasons: dict[uuid.UUID, str]) -> None:
    async with services.db().acquire() as conn, conn.transaction():
        await q.lock_flights(conn, list(end_reasons))
        ended = await end_tokens(conn, end_reasons, state="expired", by="flight")
        await q.add_purge_counts(conn, {f: len(ids) for f, ids in ended.templates.items()},
                                 {f: len(ids) for f, ids in ended.tokens.items()})


async def _complete(services: Services, flight_ids: list[uuid.UUID]) -> tuple[list[PurgeReceipt], set[uuid.UUID]]:
    """Close the open receipts and audit each purge, once: (all receipts, ids closed by this call)."""
    async with services.db().acquire() as conn, conn.transaction():
        closed = [to_receipt(r) for r in await q.complete_purges(conn, flight_ids)]
        for r in closed:
            await audit.record(conn, actor=r.initiated_by, action="flight.purge", outcome="ok",
                               flight_id=r.flight_id, detail=_audit_detail(r))
        done = {r.flight_id for r in closed}
        earlier = [to_receipt(r) for r in await q.receipts_of(conn, [f for f in flight_ids if f not in done])]
    return closed + earlier, done


def _audit_detail(r: PurgeReceipt) -> dict[str, object]:
    return {"flight": r.flight, "trigger": r.trigger, "key_id": str(r.key_id) if r.key_id else None,
            "kek_id": r.kek_id, "templates_deleted": r.templates_deleted, "tokens_ended": r.tokens_ended,
            "tokens_total": r.tokens_total, "consents_kept": r.consents_kept}


def to_receipt(row) -> PurgeReceipt:
    return PurgeReceipt(
        flight_id=row["flight_id"], flight=row["flight_code"], scheduled_departure=row["scheduled_departure"],
        trigger=row["trigger"], initiated_by=row["initiated_by"], started_at=row["started_at"],
        completed=row["completed_at"] is not None, key_id=row["key_id"], kek_id=row["kek_id"],
        key_destroyed_at=row["key_destroyed_at"], templates_deleted=row["templates_deleted"],
        tokens_ended=row["tokens_ended"], tokens_total=row["tokens_total"], consents_kept=row["consents_kept"],
        completed_at=row["completed_at"])
