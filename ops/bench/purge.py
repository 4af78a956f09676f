"""Purge speed: one 420-passenger flight and a 42,000-token departure window, against plain DELETEs.

    .venv/bin/python -m ops.bench.purge [--passengers 420] [--flights 100] [--repeats 7]

Works in a scratch database on DATABASE_URL's server (else the embedded one in FLIGHTTOKEN_DATA_DIR),
dropped at the end. Flights are built as enrolment leaves them: data key, consents, tokens and sealed
templates (random unit vectors: the purge never looks at a face), plus the galleries in memory.

* flight: ``purge_flight`` of one flight (fresh flight each repeat), against the baseline: the same
  data changes (key deleted in the key store, then templates and key marker deleted and tokens
  expired as plain statements in one transaction),
  on a twin flight, in alternating order. The ratio is what durability buys: the resumable steps,
  row locks, receipt, audit event, sync event and gallery drop.
* window: every flight of one departure window (``--flights`` x ``--passengers`` tokens) departed
  and purged by one sweeper pass, against the same baseline over a twin window.
* opt_out: one passenger withdrawing (template deleted, token revoked, out of the galleries).
Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np

from flighttoken import executor
from flighttoken.crypto.document_key import DocumentKeys
from flighttoken.crypto.keys import MasterKey, generate_master_key
from flighttoken.db.embedded import EmbeddedPostgres
from flighttoken.db.keystore import SUFFIX as KEYSTORE_SUFFIX
from flighttoken.db.keystore import KeyStore
from flighttoken.db.migrate import apply_migrations
from flighttoken.db.pool import create_pool
from flighttoken.db.queries import flights as flight_q
from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.flights.model import Flight, FlightState
from flighttoken.flights.windows import window_start
from flighttoken.galleries.build import build_galleries
from flighttoken.logs import configure_logging
from flighttoken.privacy.optout import opt_out
from flighttoken.privacy.purge import purge_flight
from flighttoken.privacy.schemas import DocumentRef, OptOutRequest
from flighttoken.privacy.sweeper import Sweeper
from flighttoken.privacy.vault import TemplateVault
from flighttoken.services import Services
from flighttoken.settings import load_settings

MODEL = "bench-model"
TERMS_SHA = hashlib.sha256(b"bench terms").hexdigest()
DOCUMENT_KEYS = DocumentKeys.generate()  # keyed as the service keys them; the opt-out bench looks rows up by them


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def err(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def ms(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1000
    return {"median": round(float(np.median(a)), 2), "min": round(float(a.min()), 2),
            "max": round(float(a.max()), 2)}


class Builder:
    """Synthetic flights, inserted with COPY the way a day of enrolments leaves them."""

    def __init__(self, services: Services, device_id: uuid.UUID) -> None:
        self.services, self.device_id = services, device_id
        self.rng = np.random.default_rng(7)
        self.counter = 0

    async def flight(self, passengers: int, departure: datetime) -> tuple[Flight, list]:
        self.counter += 1
        s = self.services
        flight = Flight(id=uuid.uuid4(), airline="BN", number=str(self.counter), scheduled_departure=departure,
                        window_start=window_start(departure, s.settings.galleries.window_seconds), destination="LAX",
                        international=True, state=FlightState.SCHEDULED, gate="23")
        vectors = self.rng.standard_normal((passengers, 512)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        async with s.db().acquire() as conn, conn.transaction():
            await flight_q.insert(conn, flight)
            await s.vault.create_flight_key(conn, flight.id)
            dek = await s.vault.flight_key(flight.id)
            assert dek is not None, "the flight key was just created"
            tokens = [uuid.uuid4() for _ in range(passengers)]
            consents = [uuid.uuid4() for _ in range(passengers)]
            docs = [DOCUMENT_KEYS.of("HKG", "P", f"B{self.counter}X{i}") for i in range(passengers)]
            sealed = await executor.run_blocking(
                lambda: [TemplateVault.seal_template(dek, t, MODEL, v) for t, v in zip(tokens, vectors, strict=True)])
            now = datetime.now(UTC)
            await conn.copy_records_to_table(
                "consents", columns=["id", "flight_id", "document_key", "terms_version", "terms_sha256",
                                     "consented_at", "device_id"],
                records=[(c, flight.id, d, "v1", TERMS_SHA, now, self.device_id) for c, d in zip(consents, docs,
                                                                                                   strict=True)])
            await conn.copy_records_to_table(
                "tokens", columns=["id", "flight_id", "document_key", "document_type", "document_last4",
                                   "issuing_state", "nationality", "surname", "given_names", "booking_reference",
                                   "consent_id"],
                records=[(t, flight.id, d, "P", f"{i:04d}", "HKG", "HKG", "Bench", "Pax", f"BK{i:05d}", c)
                         for i, (t, d, c) in enumerate(zip(tokens, docs, consents, strict=True))])
            await conn.copy_records_to_table(
                "templates", columns=["token_id", "flight_id", "model_id", "sealed", "quality"],
                records=[(t, flight.id, MODEL, b, 0.9) for t, b in zip(tokens, sealed, strict=True)])
        return flight, [(t, flight.id, flight.window_start, v) for t, v in zip(tokens, vectors, strict=True)]

    async def galleries(self, rows: list) -> None:
        flights, windows, homes = await executor.run_blocking(build_galleries, rows)
        await self.services.galleries.replace_all(flights, windows, homes)


async def baseline(pool: asyncpg.Pool, flight_ids: list[uuid.UUID], keystore: KeyStore) -> float:
    """The same data changes as a purge, as plain statements: nothing durable in between, no receipt
    (the keys deleted in the key store, then the rest in one service transaction)."""
    t0 = time.perf_counter()
    await keystore.pool.execute("DELETE FROM flight_data_keys WHERE flight_id = ANY($1::uuid[])", flight_ids)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM flight_keys WHERE flight_id = ANY($1::uuid[])", flight_ids)
        await conn.execute("DELETE FROM templates WHERE flight_id = ANY($1::uuid[])", flight_ids)
        await conn.execute("UPDATE tokens SET state = 'expired', ended_at = now(), end_reason = 'flight_departed'"
                           " WHERE flight_id = ANY($1::uuid[])", flight_ids)
    return time.perf_counter() - t0


async def bench_flight(services: Services, build: Builder, passengers: int, repeats: int) -> dict[str, object]:
    purge_t, base_t = [], []
    departure = datetime.now(UTC) + timedelta(hours=3)
    for r in range(repeats):
        target, rows = await build.flight(passengers, departure)
        twin, _ = await build.flight(passengers, departure)
        await build.galleries(rows)
        order = ["purge", "baseline"] if r % 2 == 0 else ["baseline", "purge"]
        for what in order:
            if what == "purge":
                t0 = time.perf_counter()
                receipt = await purge_flight(services, target.id, "departed")
                purge_t.append(time.perf_counter() - t0)
                assert receipt.templates_deleted == passengers
            else:
                base_t.append(await baseline(services.db(), [twin.id], services.vault.keystore))
    out = {"passengers": passengers, "repeats": repeats, "purge_ms": ms(purge_t), "baseline_ms": ms(base_t),
           "ratio": round(float(np.median(purge_t) / np.median(base_t)), 2)}
    err(f"flight of {passengers}: purge {out['purge_ms']} ms, plain DELETEs {out['baseline_ms']} ms, "
        f"ratio {out['ratio']}")
    return out


async def bench_window(services: Services, build: Builder, passengers: int, flights: int) -> dict[str, object]:
    # Two windows far apart (and far from the single-flight runs), one to purge and one for the baseline.
    base_time = datetime.now(UTC) + timedelta(days=2)
    purge_dep = window_start(base_time, services.settings.galleries.window_seconds) + timedelta(minutes=5)
    twin_dep = purge_dep + timedelta(days=1)
    t0 = time.perf_counter()
    rows, targets, twins = [], [], []
    for i in range(flights):
        f, r = await build.flight(passengers, purge_dep + timedelta(seconds=i))
        targets.append(f.id)
        rows += r
        twins.append((await build.flight(passengers, twin_dep + timedelta(seconds=i)))[0].id)
    await build.galleries(rows)
    err(f"window: {len(rows)} tokens in {flights} flights built in {time.perf_counter() - t0:.1f} s "
        f"(largest window gallery {services.galleries.sizes()['largest_window']})")
    await services.db().execute("UPDATE flights SET state = 'departed', closed_at = now() WHERE id = ANY($1::uuid[])",
                                targets)
    order = ["purge", "baseline"] if random.random() < 0.5 else ["baseline", "purge"]
    times = {}
    for what in order:
        if what == "purge":
            t0 = time.perf_counter()
            report = await Sweeper(services).sweep_once()
            times["purge"] = time.perf_counter() - t0
            assert len(report.purged) == flights and not report.failed, report
            assert services.galleries.sizes()["tokens"] == 0
        else:
            times["baseline"] = await baseline(services.db(), twins, services.vault.keystore)
    out = {"flights": flights, "tokens": flights * passengers, "purge_s": round(times["purge"], 3),
           "baseline_s": round(times["baseline"], 3), "ratio": round(times["purge"] / times["baseline"], 2),
           "per_flight_ms": round(times["purge"] / flights * 1000, 2)}
    err(f"window of {out['tokens']}: purge {out['purge_s']} s ({out['per_flight_ms']} ms/flight), "
        f"plain DELETEs {out['baseline_s']} s, ratio {out['ratio']}")
    return out


async def bench_opt_out(services: Services, build: Builder, kiosk, passengers: int, repeats: int) -> dict[str, object]:
    _, rows = await build.flight(passengers, datetime.now(UTC) + timedelta(hours=5))
    await build.galleries(rows)
    times = []
    for i in range(repeats):
        req = OptOutRequest(booking_reference=f"BK{i:05d}",
                            document=DocumentRef(type="P", number=f"B{build.counter}X{i}", issuing_state="HKG"))
        t0 = time.perf_counter()
        result = await opt_out(services, kiosk, req)
        times.append(time.perf_counter() - t0)
        assert result.templates_deleted == 1
    out = {"gallery": passengers, "repeats": repeats, "ms": ms(times)}
    err(f"opt-out (gallery {passengers}): {out['ms']} ms")
    return out


async def run(args: argparse.Namespace) -> dict[str, object]:
    started = time.perf_counter()
    settings = load_settings()
    configure_logging("console", "warning")  # stdout carries only the result line
    executor.configure()
    embedded = None
    admin_dsn = settings.database.database_url
    if not admin_dsn:
        embedded = EmbeddedPostgres(settings.database.data_dir)
        admin_dsn = await executor.run_blocking(embedded.start)
    name = "ft_bench_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(admin_dsn, name)
    master = generate_master_key("kek-bench")
    settings = settings.replace(database_url=dsn, master_key=master, audit_retention_days=0)
    pool = await create_pool(dsn, settings)
    keystore = await KeyStore.open(dsn, settings)
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn, hooks=keystore.service_migration_hooks())
            kiosk, _ = await add_device(conn, name="bench-kiosk", kind=DeviceKind.KIOSK)
        services = Services(settings=settings, dsn=dsn, pool=pool)
        services.vault = TemplateVault(MasterKey.parse(master), keystore)
        # The keys the rows were seeded with: opt-out finds a passenger by their document's key.
        services.document_keys = DOCUMENT_KEYS
        build = Builder(services, kiosk.id)
        out: dict[str, object] = {"bench": "purge"}
        out["flight"] = await bench_flight(services, build, args.passengers, args.repeats)
        out["window"] = await bench_window(services, build, args.passengers, args.flights)
        out["opt_out"] = await bench_opt_out(services, build, kiosk, args.passengers, args.repeats * 3)
        out["seconds"] = round(time.perf_counter() - started, 1)
        return out
    finally:
        await pool.close()
        await keystore.close()
        for db in (name, name + KEYSTORE_SUFFIX):
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
        if embedded is not None:
            await executor.run_blocking(embedded.stop)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--passengers", type=int, default=420)
    parser.add_argument("--flights", type=int, default=100, help="flights in the window (x passengers = tokens)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    out = asyncio.run(run(args))
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
