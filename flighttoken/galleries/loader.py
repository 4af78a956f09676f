"""Rebuild every gallery from PostgreSQL (start-up, and whenever an instance must resynchronise).

Three steps, each timed in the ``galleries_rebuilt`` log line: fetch the sealed templates (one
query), open them (one executor hop: AES-GCM holds the GIL, so more threads would not help), build
the galleries (a large window's graph on every core; ``ops/bench/galleries.py`` measures a
42,000-face window).
"""

from __future__ import annotations

import time

import msgspec
import structlog

from flighttoken.db.queries import tokens as token_q
from flighttoken.executor import run_blocking
from flighttoken.galleries.build import build_galleries
from flighttoken.galleries.params import GalleryParams
from flighttoken.galleries.purpose import build_purpose_galleries, standing_of
from flighttoken.galleries.quarantine import open_templates, set_aside
from flighttoken.services import Services

log = structlog.get_logger(__name__)


class RebuildReport(msgspec.Struct, frozen=True):
    """What a rebuild loaded and where its time went (seconds, wall clock)."""

    tokens: int
    quarantined: int
    flights: int
    windows: int
    largest_window: int
    graph_shards: int
    fetch_s: float
    open_s: float
    build_s: float
    seconds: float


async def rebuild_galleries(services: Services) -> RebuildReport:
    started = time.perf_counter()
    params = GalleryParams.from_settings(services.settings)
    services.galleries.configure(params)  # galleries created later (enrolments, sync) match these
    pool, model_id = services.db(), services.engine.model_id
    rows = await token_q.searchable_templates(pool, model_id)
    keys = {}
    for flight_id in {r["flight_id"] for r in rows}:
        dek = await services.vault.flight_key(flight_id)
        if dek is not None:
            keys[flight_id] = dek
    fetched = time.perf_counter()
    # A row that fails to open is set aside, never a reason to stop: see galleries/quarantine.py.
    opened, unreadable = await run_blocking(open_templates, rows, keys, model_id)
    standing = {str(r["token_id"]): standing_of(r) for r in rows}  # places each in purpose galleries
    del rows  # the sealed copies: ~2 KB a face
    await set_aside(services, unreadable, where="rebuild")
    services.quarantine.released(t for t, *_ in opened)
    decrypted = time.perf_counter()
    flights, windows, homes = await run_blocking(build_galleries, opened, params)
    purposes = await run_blocking(build_purpose_galleries, opened, standing, params, {**flights, **windows})
    built = time.perf_counter()
    await services.galleries.replace_all(flights, windows, homes, purposes, standing)
    report = RebuildReport(
        tokens=len(opened), quarantined=len(unreadable), flights=len(flights), windows=len(windows),
        largest_window=max((len(g) for g in windows.values()), default=0),
        graph_shards=sum(g.graph_shards for g in windows.values()),
        fetch_s=round(fetched - started, 3), open_s=round(decrypted - fetched, 3),
        build_s=round(built - decrypted, 3), seconds=round(time.perf_counter() - started, 3))
    log.info("galleries_rebuilt", **msgspec.structs.asdict(report))
    return report
