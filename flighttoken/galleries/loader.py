"""Rebuild every gallery from PostgreSQL (start-up, and whenever an instance must resynchronise)."""

from __future__ import annotations

import time
import uuid

import structlog

from flighttoken.db.queries import tokens as token_q
from flighttoken.executor import run_blocking
from flighttoken.galleries.registry import build_galleries
from flighttoken.privacy.vault import TemplateVault
from flighttoken.services import Services

log = structlog.get_logger(__name__)


def _open_all(rows, keys: dict[uuid.UUID, bytes], model_id: str) -> list:
    out = []
    for r in rows:
        dek = keys.get(r["flight_id"])
        if dek is None:  # key already destroyed: the flight is being purged
            continue
        vector = TemplateVault.open_template(dek, r["token_id"], model_id, r["sealed"])
        out.append((r["token_id"], r["flight_id"], r["window_start"], vector))
    return out


async def rebuild_galleries(services: Services) -> int:
    started = time.perf_counter()
    pool, model_id = services.db(), services.engine.model_id
    rows = await token_q.searchable_templates(pool, model_id)
    keys = {}
    for flight_id in {r["flight_id"] for r in rows}:
        dek = await services.vault.flight_key(pool, flight_id)
        if dek is not None:
            keys[flight_id] = dek
    opened = await run_blocking(_open_all, rows, keys, model_id)
    flights, windows, homes = await run_blocking(build_galleries, opened)
    await services.galleries.replace_all(flights, windows, homes)
    log.info("galleries_rebuilt", tokens=len(opened), flights=len(flights), windows=len(windows),
             seconds=round(time.perf_counter() - started, 2))
    return len(opened)
