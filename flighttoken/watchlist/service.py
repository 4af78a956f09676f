"""Watchlist subjects: enrol from photos, list, read, remove; expiry; loading the gallery.

Photos are analysed in memory and discarded: only sealed templates are stored. A subject's
templates are deleted when it is removed or expires; the subject row stays as the record of the
case (reference, reason, who added it, when it ended).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import structlog

from flighttoken.crypto.sealing import DecryptionError
from flighttoken.db.connection import Connection, one
from flighttoken.db.queries import audit
from flighttoken.db.queries import watchlist as q
from flighttoken.devices.model import Device
from flighttoken.errors import NotFound, Unprocessable
from flighttoken.executor import run_blocking
from flighttoken.services import Services
from flighttoken.sync.events import publish
from flighttoken.watchlist import vault
from flighttoken.watchlist.schemas import EnrolledSubject, NewSubject, RejectedPhoto, Subject

log = structlog.get_logger(__name__)


def actor(device: Device) -> str:
    return f"device:{device.id}"


def to_subject(row: asyncpg.Record, now: datetime) -> Subject:
    status = "removed" if row["removed_at"] else "expired" if row["expires_at"] <= now else "active"
    return Subject(id=row["id"], case_reference=row["case_reference"], reason_code=row["reason_code"],
                   added_by=row["added_by"], created_at=row["created_at"], expires_at=row["expires_at"],
                   status=status, templates=row["templates"], removed_at=row["removed_at"],
                   removed_by=row["removed_by"])


async def enrol(services: Services, device: Device, req: NewSubject) -> EnrolledSubject:
    now = datetime.now(UTC)
    latest = now + timedelta(days=services.settings.watchlist.watchlist_max_days)
    if not now < req.expires_at <= latest:
        raise Unprocessable("expires_at must be in the future and at most "
                            f"{services.settings.watchlist.watchlist_max_days} days ahead", code="invalid_expiry")
    analyses = await asyncio.gather(*(services.engine.analyse(p) for p in req.photos))
    usable, rejected = [], []
    for i, a in enumerate(analyses):
        if a.template is None or a.quality_failures:
            rejected.append(RejectedPhoto(index=i, reasons=a.quality_failures or ["no_face"]))
        else:
            usable.append((len(usable), a))
    if not usable:
        raise Unprocessable("no photo passed the quality checks", code="capture_rejected",
                            reasons=sorted({r for p in rejected for r in p.reasons}))

    subject_id, model_id = uuid.uuid4(), services.engine.model_id
    async with services.db().acquire() as conn, conn.transaction():
        key_id, dek = await vault.current_key(services.vault, conn)
        await q.insert_subject(conn, subject_id=subject_id, case_reference=req.case_reference,
                               reason_code=req.reason_code, added_by=req.added_by, device_id=device.id,
                               expires_at=req.expires_at)
        for n, a in usable:
            sealed = vault.seal_template(dek, subject_id, n, model_id, a.template.vector)
            await q.insert_template(conn, subject_id=subject_id, n=n, key_id=key_id, model_id=model_id,
                                    sealed=sealed, quality=float(a.subject.det_score))
        await audit.record(conn, actor=actor(device), action="watchlist.subject.enrol", outcome="ok",
                           detail={"subject_id": str(subject_id), "templates": len(usable)})
        await _changed(services, conn, [subject_id])
        row = one(await q.subject(conn, subject_id))  # the subject just enrolled
    await services.watchlist.gallery.add(subject_id, [(n, a.template.vector) for n, a in usable], req.expires_at)
    log.info("watchlist_subject_enrolled", subject_id=str(subject_id), templates=len(usable))
    return EnrolledSubject(**msgspec.structs.asdict(to_subject(row, now)), rejected_photos=rejected)


async def _changed(services: Services, conn: Connection, subject_ids: list[uuid.UUID]) -> None:
    """Tell the other instances (at commit) to reload these subjects; see ``watchlist.sync``."""
    await publish(conn, services.instance_id, "watchlist_changed",
                  payload={"subject_ids": ",".join(str(s) for s in subject_ids)})


async def get(services: Services, subject_id: uuid.UUID) -> Subject:
    row = await q.subject(services.db(), subject_id)
    if row is None:
        raise NotFound("no such watchlist subject", code="subject_not_found")
    return to_subject(row, datetime.now(UTC))


async def list_subjects(services: Services, status: str, limit: int, offset: int) -> list[Subject]:
    now = datetime.now(UTC)
    return [to_subject(r, now) for r in await q.subjects(services.db(), status=status, now=now, limit=limit,
                                                          offset=offset)]


async def remove(services: Services, device: Device, subject_id: uuid.UUID, removed_by: str) -> None:
    """Take a subject off the watchlist and delete its templates. Removing twice is a no-op."""
    async with services.db().acquire() as conn, conn.transaction():
        if await q.subject(conn, subject_id) is None:
            raise NotFound("no such watchlist subject", code="subject_not_found")
        if await q.mark_removed(conn, subject_id, removed_by):
            await audit.record(conn, actor=actor(device), action="watchlist.subject.remove", outcome="ok",
                               detail={"subject_id": str(subject_id)})
            await _changed(services, conn, [subject_id])
    await services.watchlist.gallery.remove([subject_id])
    log.info("watchlist_subject_removed", subject_id=str(subject_id))


async def expire_due(services: Services) -> int:
    """Delete the templates of subjects past their expiry, and forget them in memory. Every
    instance runs this itself (and never matches an expired subject meanwhile): no event needed."""
    now = datetime.now(UTC)
    async with services.db().acquire() as conn, conn.transaction():
        expired = await q.expire_due(conn, now)
        for subject_id in expired:
            await audit.record(conn, actor="system", action="watchlist.subject.expire", outcome="ok",
                               detail={"subject_id": str(subject_id)})
    await services.watchlist.gallery.remove(set(expired) | set(services.watchlist.gallery.expired(now)))
    if expired:
        log.info("watchlist_subjects_expired", count=len(expired))
    return len(expired)


async def open_rows(services: Services, rows: list[asyncpg.Record]) -> list:
    """Decrypt template rows into (subject, photo number, vector, expiry) entries. A row that fails
    to decrypt is set aside (logged, counted, audited once per instance) and the others still load:
    the subject is screened on its remaining photos (see galleries/quarantine.py)."""
    pool, model_id = services.db(), services.engine.model_id
    keys = {k: await vault.key(services.vault, pool, k) for k in {r["key_id"] for r in rows}}

    def open_all() -> tuple[list, list]:
        opened, bad = [], []
        for r in rows:
            try:
                vector = vault.open_template(keys[r["key_id"]], r["subject_id"], r["n"], model_id, r["sealed"])
            except DecryptionError:
                bad.append((r["subject_id"], r["n"]))
                continue
            opened.append((r["subject_id"], r["n"], vector, r["expires_at"]))
        return opened, bad

    opened, bad = await run_blocking(open_all)
    quarantine = services.quarantine.watchlist
    quarantine.difference_update((s, n) for s, n, _, _ in opened)
    for subject_id, n in bad:
        if (subject_id, n) in quarantine:
            continue
        log.error("watchlist_template_quarantined", subject_id=str(subject_id), photo=n,
                  reason="watchlist template row failed to decrypt")
        await audit.record(pool, actor="system", action="watchlist.template.quarantine", outcome="error",
                           detail={"subject_id": str(subject_id), "photo": n, "instance": services.instance_id})
        quarantine.add((subject_id, n))
    return opened


async def load_gallery(services: Services) -> int:
    """Build the in-memory watchlist from PostgreSQL (start-up)."""
    rows = await q.searchable_templates(services.db(), services.engine.model_id, datetime.now(UTC))
    entries = await open_rows(services, rows)
    await services.watchlist.gallery.replace(entries)
    services.watchlist.loaded = True
    log.info("watchlist_loaded", subjects=len(services.watchlist.gallery), templates=len(entries))
    return len(entries)
