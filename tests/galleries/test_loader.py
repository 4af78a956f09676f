"""Rebuilding galleries from PostgreSQL: sealed templates in, flight galleries (exhaustive) and
window galleries (graphs) out, built with the settings' parameters; and those settings."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import msgspec
import numpy as np
import pytest

from flighttoken.crypto.keys import MasterKey, generate_master_key
from flighttoken.db.keystore import KeyStore
from flighttoken.db.migrate import apply_migrations
from flighttoken.db.pool import create_pool
from flighttoken.db.queries import flights as flight_q
from flighttoken.db.queries import tokens as token_q
from flighttoken.decisions.match import threshold_for
from flighttoken.decisions.policy import TOUCHPOINTS
from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.flights.model import Flight, FlightState
from flighttoken.flights.windows import window_start
from flighttoken.galleries.loader import rebuild_galleries
from flighttoken.galleries.params import LARGEST_GALLERY, GalleryParams
from flighttoken.privacy.vault import TemplateVault
from flighttoken.services import Services
from flighttoken.settings import Settings, SettingsError, load_settings

MODEL = "test-model"
DIM = 512


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


async def seed_flight(services: Services, device_id: uuid.UUID, number: str, departure: datetime,
                      vectors: np.ndarray) -> list[uuid.UUID]:
    """One flight, stored the way enrolment stores it (same query functions, one row at a time)."""
    flight = Flight(id=uuid.uuid4(), airline="TT", number=number, scheduled_departure=departure,
                    window_start=window_start(departure, services.settings.galleries.window_seconds), destination="LAX",
                    international=True, state=FlightState.SCHEDULED, gate="23")
    tokens = []
    async with services.db().acquire() as conn, conn.transaction():
        await flight_q.insert(conn, flight)
        await services.vault.create_flight_key(conn, flight.id)
        dek = await services.vault.flight_key(flight.id)
        assert dek is not None  # created just above
        for i, v in enumerate(vectors):
            doc = hashlib.sha256(f"{number}-{i}".encode()).digest()
            consent = uuid.uuid4()
            await token_q.insert_consent(conn, consent_id=consent, flight_id=flight.id, document_key=doc,
                                         terms_version="v1", terms_sha256="0" * 64, consented_at=departure,
                                         device_id=device_id)
            row = await token_q.insert_token(
                conn, token_id=uuid.uuid4(), flight_id=flight.id, document_key=doc, document_type="P",
                document_last4="0000", issuing_state="HKG", nationality="HKG", surname="Test", given_names="Pax",
                booking_reference=f"B{number}{i}", seat=None, lounge_eligible=False, consent_id=consent)
            await token_q.upsert_template(conn, token_id=row["id"], flight_id=flight.id, model_id=MODEL,
                                          sealed=TemplateVault.seal_template(dek, row["id"], MODEL, v), quality=0.9)
            tokens.append(row["id"])
    return tokens


@pytest.fixture(scope="module")
async def world(base_settings: Settings, database_url: str) -> AsyncIterator[SimpleNamespace]:
    master = generate_master_key("kek-test")
    settings = base_settings.replace(database_url=database_url, master_key=master, gallery_exact_max=200,
        gallery_shard_size=256, gallery_graph_dim=64, gallery_ef=64, gallery_rerank_k=16)
    pool = await create_pool(database_url, settings)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
        kiosk, _ = await add_device(conn, name="test-kiosk", kind=DeviceKind.KIOSK)
    services = Services(settings=settings, dsn=database_url, pool=pool)
    keystore = await KeyStore.open(database_url, settings)
    services.vault = TemplateVault(MasterKey.parse(master), keystore)
    # A stand-in engine: the loader reads only its model_id.
    services.engine = SimpleNamespace(model_id=MODEL)  # pyright: ignore[reportAttributeAccessIssue]
    rng = np.random.default_rng(5)
    base = datetime.now(UTC) + timedelta(hours=6)
    busy = window_start(base, settings.galleries.window_seconds) + timedelta(minutes=1)
    quiet = busy + timedelta(days=1)
    vectors = unit(rng.standard_normal((650, DIM)))
    tokens = []
    for f in range(4):  # four flights of 150 in one window: 600 faces, past exact_max
        rows = vectors[f * 150 : (f + 1) * 150]
        tokens += await seed_flight(services, kiosk.id, f"{f}", busy + timedelta(minutes=f), rows)
    tokens += await seed_flight(services, kiosk.id, "Q", quiet, vectors[600:])
    try:
        yield SimpleNamespace(services=services, tokens=tokens, vectors=vectors, rng=rng,
                              busy=window_start(busy, settings.galleries.window_seconds),
                              quiet=window_start(quiet, settings.galleries.window_seconds))
    finally:
        await pool.close()
        await keystore.close()


async def test_rebuild_loads_every_template_into_exhaustive_flights_and_sharded_windows(world) -> None:
    services = world.services
    report = await rebuild_galleries(services)
    assert (report.tokens, report.flights, report.windows, report.largest_window) == (650, 5, 2, 600)
    assert report.graph_shards == 3  # 600 window labels in shards of 256; the 50-face window has none
    assert report.seconds >= report.build_s >= 0
    assert services.galleries.params == GalleryParams.from_settings(services.settings)
    # Every token is enrolled for an international flight: all in the e-channel's, the gates', the bag
    # drops' and the security gates' purpose galleries, none yet in the lounges'.
    flights = [150, 150, 150, 150, 50]
    assert services.galleries.sizes_by_kind() == {"flight": flights, "window": [600, 50],
                                                  "e_channel": [600, 50], "lounge": [], "gate": flights,
                                                  "bag_drop": [600, 50], "e_security_gate": [600, 50]}

    probes = unit(world.vectors + 0.9 * world.rng.standard_normal(world.vectors.shape) / np.sqrt(DIM))
    for i in range(0, 600, 5):
        want = world.vectors[:600] @ probes[i]
        hits = await services.galleries.search_windows([world.busy], probes[i], k=2)
        assert hits[0].id == str(world.tokens[int(np.argmax(want))])
        assert hits[0].score == pytest.approx(float(want.max()), abs=1e-5)
    hits = await services.galleries.search_windows([world.quiet], probes[620], k=1)
    assert hits[0].id == str(world.tokens[620])


async def test_rebuild_places_tokens_in_purpose_galleries_by_state(world) -> None:
    services = world.services
    cleared, boarded = world.tokens[0], world.tokens[1]
    async with services.db().acquire() as conn:
        await conn.execute("UPDATE tokens SET state = 'immigration_cleared', lounge_eligible = true WHERE id = $1",
                           cleared)
        await conn.execute("UPDATE tokens SET state = 'boarded' WHERE id = $1", boarded)
    try:
        await rebuild_galleries(services)
        galleries = services.galleries
        flight = (await galleries.search_windows([world.busy], world.vectors[0], k=1))[0]
        assert flight.id == str(cleared)
        e_channel = await galleries.search_purpose(DeviceKind.E_CHANNEL, [world.busy], world.vectors[0], k=1)
        lounge = await galleries.search_purpose(DeviceKind.LOUNGE, [world.busy], world.vectors[0], k=1)
        assert e_channel[0].id != str(cleared) and [c.id for c in lounge] == [str(cleared)]
        assert galleries.purpose_size(DeviceKind.E_CHANNEL, [world.busy]) == 598
        assert galleries.purpose_size(DeviceKind.LOUNGE, [world.busy]) == 1
        home = galleries.homes()[boarded][0]
        assert galleries.purpose_size(DeviceKind.GATE, [home]) == 149  # boarded: out of its flight's gate gallery
        assert galleries.flight_size(home) == 150  # but still in the wide one (misuse search)
    finally:
        async with services.db().acquire() as conn:
            await conn.execute("UPDATE tokens SET state = 'enrolled', lounge_eligible = false WHERE id = ANY($1)",
                               [cleared, boarded])


async def test_galleries_created_after_the_rebuild_use_the_settings(world) -> None:
    """An enrolment opening a new window gallery builds its graph past the configured exact_max
    (200 here), not the default 1024."""
    services = world.services
    await rebuild_galleries(services)
    window = world.quiet + timedelta(days=3)
    flight = uuid.uuid4()
    vectors = unit(world.rng.standard_normal((201, DIM)))
    for v in vectors:
        await services.galleries.add(uuid.uuid4(), flight, window, v)
    assert services.galleries.window_size(window) == 201
    galleries = services.galleries._windows
    assert galleries[window].graph_shards == 1 and services.galleries._flights[flight].graph_shards == 1
    assert galleries[world.busy].graph_dim == 64


@pytest.mark.parametrize(("variable", "value"), [("FLIGHTTOKEN_GALLERY_EF", "0"),
                                                 ("FLIGHTTOKEN_GALLERY_SHARD_SIZE", "-5"),
                                                 ("FLIGHTTOKEN_GALLERY_EXACT_MAX", "-1"),
                                                 ("FLIGHTTOKEN_GALLERY_M", "many"),
                                                 ("FLIGHTTOKEN_GALLERY_VERIFY_MARGIN", "1.5")])
def test_bad_gallery_settings_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: value})


def test_gallery_params_follow_the_settings() -> None:
    s = load_settings({"FLIGHTTOKEN_GALLERY_EF": "300", "FLIGHTTOKEN_GALLERY_BUILD_THREADS": "3",
                       "FLIGHTTOKEN_GALLERY_GRAPH_DIM": "128"})
    p = GalleryParams.from_settings(s)
    assert (p.ef, p.build_threads, p.threads(), p.graph_dim) == (300, 3, 3, 128)
    defaults = GalleryParams.from_settings(load_settings({}))
    assert msgspec.structs.replace(defaults, verify_below=None) == GalleryParams()  # the defaults agree


THRESHOLDS = {"FLIGHTTOKEN_GATE_THRESHOLD": "0.40", "FLIGHTTOKEN_E_CHANNEL_THRESHOLD": "0.42",
              "FLIGHTTOKEN_LOUNGE_THRESHOLD": "0.41", "FLIGHTTOKEN_BAG_DROP_THRESHOLD": "0.43",
              "FLIGHTTOKEN_E_SECURITY_GATE_THRESHOLD": "0.44", "FLIGHTTOKEN_DUPLICATE_THRESHOLD": "0.45",
              "FLIGHTTOKEN_GALLERY_VERIFY_MARGIN": "0.05",
              # A light impostor tail: the configured floors decide, even at 100,000 faces.
              "FLIGHTTOKEN_IMPOSTOR_TAIL_SCORE_1E6": "0.10"}


@pytest.mark.parametrize(("changes", "verify_below"), [
    ({}, 0.49),  # the highest touchpoint threshold (the e-Security Gate's 0.44) + the margin
    ({"FLIGHTTOKEN_LOUNGE_THRESHOLD": "0.5"}, 0.55),
    ({"FLIGHTTOKEN_GALLERY_VERIFY_MARGIN": "0", "FLIGHTTOKEN_DUPLICATE_THRESHOLD": "0.6"}, 0.6),
])
def test_graph_results_near_any_threshold_are_verified(changes: dict[str, str], verify_below: float) -> None:
    settings = load_settings(THRESHOLDS | changes)
    assert GalleryParams.from_settings(settings).verify_below == pytest.approx(verify_below)


def test_verification_covers_the_threshold_of_the_largest_clearance_group() -> None:
    # With the measured impostor tail, a 100,000-face window needs a higher score than any floor.
    settings = load_settings({})
    highest = max(threshold_for(settings, kind, LARGEST_GALLERY) for kind in TOUCHPOINTS)
    d = settings.decisions
    assert highest > max(d.gate_threshold, d.e_channel_threshold, d.lounge_threshold)
    assert GalleryParams.from_settings(settings).verify_below == pytest.approx(
        highest + settings.galleries.gallery_verify_margin, abs=1e-6)
