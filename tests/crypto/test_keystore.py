"""The key store: wrapped data keys in a database of their own (never the service database), created
next to it by default; a purged flight's key can never come back; migration 0006 moves the keys of
an existing deployment out of the service database, all or nothing, and only through the service."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest
from structlog.testing import capture_logs

from flighttoken.app import create_app
from flighttoken.crypto.keys import MasterKey, generate_master_key, new_data_key
from flighttoken.db.connection import Connection
from flighttoken.db.keystore import KeyStore, KeyStoreError, sibling_database
from flighttoken.db.migrate import MigrationError, apply_migrations, discover
from flighttoken.db.queries import flights as flight_q
from flighttoken.db.queries import tokens as token_q
from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.flights.model import Flight, FlightState
from flighttoken.flights.windows import window_start
from flighttoken.lifecycle import StartupError, lifespan
from flighttoken.privacy import document_keys
from flighttoken.privacy.vault import TemplateVault, flight_context
from flighttoken.settings import SettingsError, load_settings
from flighttoken.testing import create_database, drop_database
from flighttoken.watchlist import vault as watchlist_vault

KEK = generate_master_key("kek-legacy")
PASSENGERS = 6


def test_the_default_key_store_is_the_sibling_database() -> None:
    assert sibling_database("postgresql://u:p@db.example:5432/flighttoken?sslmode=require") == (
        "flighttoken_keys", "postgresql://u:p@db.example:5432/flighttoken_keys?sslmode=require")
    assert sibling_database("postgresql://postgres:@/postgres?host=/run/pg")[1] == \
        "postgresql://postgres:@/postgres_keys?host=/run/pg"
    with pytest.raises(KeyStoreError, match="FLIGHTTOKEN_KEYSTORE_URL"):
        sibling_database("postgresql://u@db.example:5432")
    with pytest.raises(KeyStoreError, match="longer"):
        sibling_database("postgresql://u@h/" + "x" * 60)


def test_key_store_settings_are_validated() -> None:
    with pytest.raises(SettingsError, match="FLIGHTTOKEN_KEYSTORE_URL"):
        load_settings({"FLIGHTTOKEN_KEYSTORE_URL": "mysql://keys"})
    with pytest.raises(SettingsError, match="FLIGHTTOKEN_KEYSTORE_POOL_MAX"):
        load_settings({"FLIGHTTOKEN_KEYSTORE_POOL_MAX": "0"})


async def test_instances_starting_together_create_and_migrate_one_key_store(base_settings, database_url,
                                                                           admin_dsn) -> None:
    stores = await asyncio.gather(*(KeyStore.open(database_url, base_settings) for _ in range(3)))
    try:
        name = sibling_database(database_url)[0]
        admin = await asyncpg.connect(admin_dsn)
        try:
            assert await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1
        finally:
            await admin.close()
        tables = {r["tablename"] for r in await stores[0].pool.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert tables == {"schema_migrations", "flight_data_keys", "destroyed_flight_keys", "watchlist_data_keys",
                      "document_mac_keys"}
        # Keys written through one instance are read through another: they share the store.
        master = MasterKey.parse(KEK)
        flight_id = uuid.uuid4()
        dek = new_data_key()
        key_id = await stores[0].add_flight_key(flight_id, uuid.uuid4(), master.wrap(dek, flight_context(flight_id)))
        stored = await stores[1].flight_key(flight_id)
        assert stored is not None
        assert master.unwrap(stored, flight_context(flight_id)) == dek
        # Adding again keeps the first key (a retried flight creation must not replace it).
        again = await stores[2].add_flight_key(flight_id, uuid.uuid4(), master.wrap(new_data_key(),
                                                                                     flight_context(flight_id)))
        assert again == key_id
        stored = await stores[2].flight_key(flight_id)
        assert stored is not None
        assert master.unwrap(stored, flight_context(flight_id)) == dek
    finally:
        for s in stores:
            await s.close()


async def test_a_destroyed_flight_key_leaves_a_tombstone_and_never_comes_back(base_settings, database_url) -> None:
    store = await KeyStore.open(database_url, base_settings)
    try:
        master, flight_id = MasterKey.parse(KEK), uuid.uuid4()
        key_id = await store.add_flight_key(flight_id, uuid.uuid4(), master.wrap(new_data_key(),
                                                                                 flight_context(flight_id)))
        [tomb] = await store.destroy_flight_keys([flight_id])
        assert (tomb["flight_id"], tomb["key_id"], tomb["kek_id"]) == (flight_id, key_id, "kek-legacy")
        with capture_logs() as logs:
            assert await store.flight_key(flight_id) is None  # purged: expected, quiet
            assert await store.flight_key(uuid.uuid4()) is None  # never here: the wrong key store?
        assert [e["event"] for e in logs] == ["flight_key_missing"]
        assert await store.destroy_flight_keys([flight_id]) == [tomb], "a second purge finds the same tombstone"
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError):
            await store.add_flight_key(flight_id, uuid.uuid4(), master.wrap(new_data_key(), flight_context(flight_id)))
    finally:
        await store.close()


async def test_a_key_store_url_pointing_at_the_service_database_is_refused(base_settings, database_url) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
    finally:
        await pool.close()
    with pytest.raises(KeyStoreError, match="points at the service database"):
        await KeyStore.open(database_url, base_settings.replace(keystore_url=database_url))


# ---- migration 0006: an existing deployment's keys move to the key store ----------------------------


async def _legacy_database(admin_dsn: str, model_id: str) -> tuple[str, str, dict]:
    """A database as the previous release left it (migrations up to 0005): a flight with sealed
    templates and a watchlist key, their wrapped keys in the service database."""
    name, url = await create_database(admin_dsn)
    master = MasterKey.parse(KEK)
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn, [m for m in discover() if m.version <= 5])
        kiosk, _ = await add_device(conn, name="legacy-kiosk", kind=DeviceKind.KIOSK)
        departure = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
        flight = Flight(id=uuid.uuid4(), airline="CX", number="100", scheduled_departure=departure,
                        window_start=window_start(departure, 7200), destination="LAX", international=True,
                        state=FlightState.SCHEDULED, gate="23")
        await flight_q.insert(conn, flight)
        dek = new_data_key()
        wrapped = master.wrap(dek, flight_context(flight.id))
        await conn.execute("INSERT INTO flight_keys (flight_id, kek_id, wrapped) VALUES ($1, $2, $3)",
                           flight.id, wrapped.kek_id, wrapped.wrapped)
        rng = np.random.default_rng(3)
        for i in range(PASSENGERS):
            doc, consent = hashlib.sha256(f"legacy{i}".encode()).digest(), uuid.uuid4()
            await token_q.insert_consent(conn, consent_id=consent, flight_id=flight.id, document_key=doc,
                                         terms_version="v1", terms_sha256="0" * 64, consented_at=departure,
                                         device_id=kiosk.id)
            # The previous release's columns (0002), not today's insert: later migrations add columns.
            row = await conn.fetchrow(
                "INSERT INTO tokens (id, flight_id, document_key, document_type, document_last4, issuing_state,"
                " nationality, surname, given_names, booking_reference, consent_id)"
                " VALUES ($1, $2, $3, 'P', '0000', 'HKG', 'HKG', 'Legacy', 'Pax', $4, $5) RETURNING id",
                uuid.uuid4(), flight.id, doc, f"LG{i}", consent)
            v = rng.standard_normal(512).astype(np.float32)
            sealed = TemplateVault.seal_template(dek, row["id"], model_id, v / np.linalg.norm(v))
            await token_q.upsert_template(conn, token_id=row["id"], flight_id=flight.id, model_id=model_id,
                                          sealed=sealed, quality=0.9)
        watch_id, watch_dek = uuid.uuid4(), new_data_key()
        w = master.wrap(watch_dek, watchlist_vault.key_context(watch_id))
        await conn.execute("INSERT INTO watchlist_keys (id, kek_id, wrapped) VALUES ($1, $2, $3)",
                           watch_id, w.kek_id, w.wrapped)
    finally:
        await conn.close()
    return name, url, {"flight": flight, "dek": dek, "wrapped": wrapped, "watch_id": watch_id,
                       "watch_dek": watch_dek, "watch_wrapped": w}


async def _columns(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT table_name || '.' || column_name AS c FROM information_schema.columns"
                                " WHERE table_name IN ('flight_keys', 'watchlist_keys')")
        return {r["c"] for r in rows}
    finally:
        await conn.close()


async def test_migrate_without_the_key_store_refuses_0006_and_drops_nothing(base_settings, admin_dsn) -> None:
    name, url, legacy = await _legacy_database(admin_dsn, "m")
    try:
        conn = await asyncpg.connect(url)
        try:
            with pytest.raises(MigrationError, match="start the service"):
                await apply_migrations(conn)  # what a bare `flighttoken migrate` does
            assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 5
            kept = await conn.fetchrow("SELECT kek_id, wrapped FROM flight_keys")
            assert bytes(kept["wrapped"]) == legacy["wrapped"].wrapped
        finally:
            await conn.close()
    finally:
        await drop_database(admin_dsn, name)


async def test_a_crash_after_the_copy_drops_nothing_and_the_next_start_finishes(base_settings, admin_dsn) -> None:
    name, url, legacy = await _legacy_database(admin_dsn, "m")
    store = await KeyStore.open(url, base_settings)
    try:
        real = store.service_migration_hooks()[6]

        async def copy_then_crash(conn: Connection) -> None:
            await real(conn)
            raise ConnectionResetError("killed after copying the keys")

        conn = await asyncpg.connect(url)
        try:
            with pytest.raises(ConnectionResetError):
                await apply_migrations(conn, hooks={6: copy_then_crash})
            assert "flight_keys.wrapped" in await _columns(url), "the service database still has its keys"
            assert await store.flight_key(legacy["flight"].id) == legacy["wrapped"], "and the key store a copy"
            # 0010 keys the legacy rows' document digests: it needs the master key too.
            hooks = document_keys.migration_hooks(store, MasterKey.parse(KEK))
            assert await apply_migrations(conn, hooks=hooks) == [
                m.name for m in discover() if m.version >= 6]
        finally:
            await conn.close()
        assert await _columns(url) == {"flight_keys.flight_id", "flight_keys.key_id", "flight_keys.created_at",
                                       "watchlist_keys.id", "watchlist_keys.created_at"}
        assert await store.watchlist_key(legacy["watch_id"]) == legacy["watch_wrapped"]
    finally:
        await store.close()
        await drop_database(admin_dsn, name)


async def test_a_key_store_holding_other_keys_is_refused_and_nothing_is_dropped(base_settings, admin_dsn) -> None:
    name, url, legacy = await _legacy_database(admin_dsn, "m")
    store = await KeyStore.open(url, base_settings)
    try:
        fid = legacy["flight"].id
        await store.add_flight_key(fid, uuid.uuid4(), MasterKey.parse(KEK).wrap(new_data_key(), flight_context(fid)))
        conn = await asyncpg.connect(url)
        try:
            with pytest.raises(MigrationError, match="differ from the key store"):
                await apply_migrations(conn, hooks=store.service_migration_hooks())
        finally:
            await conn.close()
        assert "flight_keys.wrapped" in await _columns(url)
    finally:
        await store.close()
        await drop_database(admin_dsn, name)


async def test_the_service_moves_an_existing_deployments_keys_at_start_and_serves_its_flights(
        make_service, admin_dsn, face_engine) -> None:
    name, url, legacy = await _legacy_database(admin_dsn, face_engine.model_id)
    try:
        settings = make_service.settings(database_url=url, master_key=KEK,
                                           purge_sweep_interval_s=3600)
        async with make_service(settings) as svc:
            services, fid = svc.services, legacy["flight"].id
            # Every template of the flight was opened with the moved key and is searchable.
            assert services.galleries.flight_size(fid) == PASSENGERS
            assert await services.vault.flight_key(fid) == legacy["dek"]
            assert await watchlist_vault.key(services.vault, None, legacy["watch_id"]) == legacy["watch_dek"]
            assert await services.db().fetchval("SELECT key_id FROM flight_keys WHERE flight_id = $1", fid) == \
                await services.vault.keystore.pool.fetchval("SELECT key_id FROM flight_data_keys WHERE flight_id = $1",
                                                            fid)
        assert "flight_keys.wrapped" not in await _columns(url)
    finally:
        await drop_database(admin_dsn, name)


async def test_a_key_store_with_another_document_mac_key_is_refused_at_start(make_service, admin_dsn,
                                                                             face_engine) -> None:
    """Document keys made under one deployment's document MAC key never silently meet another's: a
    look-up or opt-out would find nothing, a re-enrolment would make a second token."""
    name, url = await create_database(admin_dsn)
    other, other_url = await create_database(admin_dsn)
    try:
        settings = make_service.settings(database_url=url, master_key=KEK, purge_sweep_interval_s=3600)
        async with make_service(settings) as svc:
            first = svc.services.document_keys.key_id
        elsewhere = settings.replace(keystore_url=other_url)
        with pytest.raises(StartupError, match=f"document MAC key .* not the one .*{first}"):
            async with lifespan(create_app(elsewhere, engine=face_engine)):
                pass
        async with make_service(settings) as svc:
            assert svc.services.document_keys.key_id == first, "its own key store still opens it"
    finally:
        await drop_database(admin_dsn, other)
        await drop_database(admin_dsn, name)
