"""Shared pieces of the gallery and identify benchmarks: LFW templates, frames, a scratch database,
flights seeded the way enrolment stores them.

LFW templates are made by the service's own engine (``analyse_sync``: the template an enrolment
of that photo would store) once, and cached outside the repository in
``~/.cache/flighttoken-bench`` (``XDG_CACHE_HOME`` honoured), keyed by everything that changes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np

from flighttoken import executor
from flighttoken.crypto.document_key import DocumentKeys
from flighttoken.db.embedded import EmbeddedPostgres
from flighttoken.db.queries import flights as flight_q
from flighttoken.faces.engine import FaceEngine
from flighttoken.faces.errors import ImageError
from flighttoken.flights.model import Flight, FlightState
from flighttoken.flights.windows import window_start
from flighttoken.privacy.vault import TemplateVault
from flighttoken.settings import FIELD_SECTION, Settings
from flighttoken.testing import create_database, drop_database
from ops.bench.engine import canvas_frame, err

__all__ = ["LfwTemplates", "WindowSeeder", "canvas_frame", "cpu_seconds", "err", "lfw_templates", "percentiles_ms",
           "quiet_logs", "random_unit", "scratch_database"]

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flighttoken-bench"
TERMS_SHA = hashlib.sha256(b"bench terms").hexdigest()
DOCUMENT_KEYS = DocumentKeys.generate()  # keyed as the service keys them; bench rows are never looked up
_CACHE_VERSION = 2  # 2: subject chosen by box size, with the second look (faces/detect.py)


def percentiles_ms(samples: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples, dtype=np.float64) * 1000
    return {"median": round(float(np.median(a)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "mean": round(float(a.mean()), 3), "n": len(a)}


def cpu_seconds() -> float:
    """CPU time of this process, all threads: on a shared machine it moves less than wall time."""
    return time.process_time()


def quiet_logs() -> None:
    """Send every log line to /dev/null, still formatted and written as the service does (the app
    keeps the root handler :func:`configure_logging` installed; calling again once the service runs
    is harmless)."""
    devnull = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    for handler in logging.getLogger().handlers:
        targets = getattr(getattr(handler, "listener", None), "handlers", None) or [handler]
        for target in targets:
            if isinstance(target, logging.StreamHandler):
                target.setStream(devnull)


def random_unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)




# ---- LFW templates ---------------------------------------------------------------------------------


@dataclass
class LfwTemplates:
    paths: list[Path]
    identity: np.ndarray  # (n,) index into names
    names: list[str]
    usable: np.ndarray  # (n,) a face was found and passed the quality gates
    vectors: np.ndarray  # (n, d) the service's templates; zero where no face
    model_id: str

    def gallery_and_probes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One enrolment photo per identity (its first usable one) and every other usable photo as a
        mated probe: ``(gallery_rows, probe_rows, probe_mate)`` with ``probe_mate`` a position in
        ``gallery_rows``."""
        first: dict[int, int] = {}  # identity -> its enrolment photo
        probes, mate_ids = [], []
        for i in np.flatnonzero(self.usable).tolist():
            ident = int(self.identity[i])
            if ident in first:
                probes.append(i)
                mate_ids.append(ident)
            else:
                first[ident] = i
        position = {ident: k for k, ident in enumerate(first)}
        return (np.array(list(first.values()), dtype=np.int64), np.array(probes, dtype=np.int64),
                np.array([position[m] for m in mate_ids], dtype=np.int64))


def lfw_templates(settings: Settings, *, use_cache: bool = True) -> LfwTemplates:
    root = Path(settings.faces_dir) / "lfw-train"
    files = sorted(root.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no photos under {root}: set FLIGHTTOKEN_FACES_DIR")
    names = sorted({f.parent.name for f in files})
    index = {n: i for i, n in enumerate(names)}
    identity = np.array([index[f.parent.name] for f in files], dtype=np.int32)
    # One session thread and two workers: on 2 cores that beats one 2-thread session.
    engine = FaceEngine.load(settings.replace(engine_threads=1, batch_max_size=1))
    fields = {f: getattr(getattr(settings, section), f) for f, section in FIELD_SECTION.items()
              if f.startswith(("detector_", "quality_", "landmark_", "image_", "flip_", "tailgating_"))}
    key = hashlib.sha256(json.dumps([engine.detector.model_id, engine.model_id, fields, len(files),
                                     _CACHE_VERSION], sort_keys=True, default=str).encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"lfw-templates-{key}.npz"
    if use_cache and cache.exists():
        z = np.load(cache)
        err(f"LFW templates from cache {cache}")
        return LfwTemplates(files, identity, names, z["usable"], z["vectors"], engine.model_id)

    usable = np.zeros(len(files), bool)
    vectors = np.zeros((len(files), engine.recognizer.dim), np.float32)

    def one(i: int) -> None:
        try:
            a = engine.analyse_sync(files[i].read_bytes())
        except ImageError:
            return
        if a.template is not None:
            vectors[i] = a.template.vector
            usable[i] = not a.quality_failures

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for k, _ in enumerate(pool.map(one, range(len(files)))):
            if k % 1000 == 999:
                err(f"  templates {k + 1}/{len(files)} in {time.perf_counter() - t0:.0f} s")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cache, usable=usable, vectors=vectors)
    err(f"made {len(files)} LFW templates in {time.perf_counter() - t0:.0f} s; cached in {cache}")
    return LfwTemplates(files, identity, names, usable, vectors, engine.model_id)


# ---- database ----------------------------------------------------------------------------------------


@asynccontextmanager
async def scratch_database(settings: Settings) -> AsyncIterator[str]:
    """A fresh, empty database on DATABASE_URL's server (else the embedded one in FLIGHTTOKEN_DATA_DIR),
    dropped afterwards. Yields its DSN."""
    embedded = None
    admin_dsn = settings.database.database_url
    if not admin_dsn:
        embedded = EmbeddedPostgres(settings.database.data_dir)
        admin_dsn = await executor.run_blocking(embedded.start)
    name, dsn = await create_database(admin_dsn)
    try:
        yield dsn
    finally:
        await drop_database(admin_dsn, name)
        if embedded is not None:
            await executor.run_blocking(embedded.stop)


class WindowSeeder:
    """Flights as enrolment leaves them (data key, consents, tokens, sealed templates), with COPY."""

    def __init__(self, pool: asyncpg.Pool, vault: TemplateVault, model_id: str, device_id: uuid.UUID,
                 window_seconds: int) -> None:
        self.pool, self.vault, self.model_id, self.device_id = pool, vault, model_id, device_id
        self.window_seconds = window_seconds
        self.count = 0

    async def flight(self, vectors: np.ndarray, departure: datetime, *, gate: str = "23",
                     state: FlightState = FlightState.SCHEDULED, token_state: str = "enrolled",
                     lounge_eligible: bool = False) -> tuple[Flight, list[uuid.UUID]]:
        self.count += 1
        n = self.count
        flight = Flight(id=uuid.uuid4(), airline="BN", number=str(n), scheduled_departure=departure,
                        window_start=window_start(departure, self.window_seconds), destination="LAX",
                        international=True, state=state, gate=gate)
        tokens = [uuid.uuid4() for _ in range(len(vectors))]
        consents = [uuid.uuid4() for _ in range(len(vectors))]
        docs = [DOCUMENT_KEYS.of("HKG", "P", f"B{n}X{i}") for i in range(len(vectors))]
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            await flight_q.insert(conn, flight)
            await self.vault.create_flight_key(conn, flight.id)
            dek = await self.vault.flight_key(flight.id)
            assert dek is not None
            sealed = await executor.run_blocking(
                lambda: [TemplateVault.seal_template(dek, t, self.model_id, v)
                         for t, v in zip(tokens, vectors, strict=True)])
            await conn.copy_records_to_table(
                "consents", columns=["id", "flight_id", "document_key", "terms_version", "terms_sha256",
                                     "consented_at", "device_id"],
                records=[(c, flight.id, d, "v1", TERMS_SHA, now, self.device_id)
                         for c, d in zip(consents, docs, strict=True)])
            await conn.copy_records_to_table(
                "tokens", columns=["id", "flight_id", "document_key", "document_type", "document_last4",
                                   "issuing_state", "nationality", "surname", "given_names", "booking_reference",
                                   "seat", "lounge_eligible", "state", "consent_id"],
                records=[(t, flight.id, d, "P", f"{i:04d}", "HKG", "HKG", "Bench", f"Pax {i}", f"BK{n:03d}{i:04d}",
                          f"{i // 6 + 1}{'ABCDEF'[i % 6]}", lounge_eligible, token_state, c)
                         for i, (t, d, c) in enumerate(zip(tokens, docs, consents, strict=True))])
            await conn.copy_records_to_table(
                "templates", columns=["token_id", "flight_id", "model_id", "sealed", "quality"],
                records=[(t, flight.id, self.model_id, s, 0.9) for t, s in zip(tokens, sealed, strict=True)])
        return flight, tokens
