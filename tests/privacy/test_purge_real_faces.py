"""Purge after departure, end to end with real faces: once flight A departs its data key is destroyed
and its templates deleted; no table holds its template bytes or key any more; its passengers match
nowhere while flight B's still do; the purge is idempotent; and a full pg_dump of the service
database taken before the purge, restored after it, cannot decrypt A's templates even with the master
key (the data key was never in the service database), while B's templates in the same dump still open.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg
import numpy as np
import pytest

from flighttoken.crypto.keys import MasterKey, WrappedKey, generate_master_key
from flighttoken.crypto.sealing import DecryptionError
from flighttoken.db.keystore import sibling_database
from flighttoken.privacy.purge import purge_flight
from flighttoken.privacy.vault import TemplateVault, flight_context
from flighttoken.testing import create_database, drop_database, identities, run_service
from tests.privacy.helpers import Backup, tables_containing
from tests.support import journey as j
from tests.support.world import Passenger, World

pytestmark = pytest.mark.slow

N_A, N_B = 12, 4
OLD_KEK = generate_master_key("kek-2026-old")




@dataclass(kw_only=True)
class PurgeWorld(World):
    flight_a: dict
    flight_b: dict
    a: list[Passenger]
    b: list[Passenger]
    secrets: dict[str, bytes] = field(default_factory=dict)
    matched_before: list[Passenger] = field(default_factory=list)
    key_id: uuid.UUID | None = None
    departure: object = None
    backup: Backup | None = None


@pytest.fixture(scope="module")
async def world(make_service, database_url, tmp_path_factory):
    settings = make_service.settings(master_key=OLD_KEK, purge_sweep_interval_s=3600)
    async with make_service(settings) as svc:
        keys = await j.make_devices(svc.services.db())
        async with svc.client(keys["admin"]) as admin:
            flight_a = await j.create_flight(admin, "884", "23")
            flight_b = await j.create_flight(admin, "886", "24", in_minutes=90)
        people = identities(settings.faces_dir, min_photos=2)[200:200 + N_A + N_B + 6]
        a, b = [], []
        async with svc.client(keys["kiosk"]) as kiosk:
            for i, (_, photos) in enumerate(people):
                target, flight = (a, flight_a) if len(a) < N_A else (b, flight_b)
                if len(b) == N_B:
                    break
                r = await kiosk.post("/v1/enrolments", json=j.enrolment(
                    photos[0], flight["id"], document_number=j.document_number(500 + i)))
                if r.status_code == 201:
                    target.append(Passenger(probe=photos[1], token_id=r.json()["token_id"]))
        assert (len(a), len(b)) == (N_A, N_B)
        w = PurgeWorld(svc=svc, keys=keys, flight_a=flight_a, flight_b=flight_b, a=a, b=b)
        async with svc.client(keys["e_channel"]) as e_channel:
            for p in a:
                d = await j.identify(e_channel, p.seen_photo)
                if d["decision"] == "proceed":
                    assert d["token_id"] == p.token_id
                    w.matched_before.append(p)
        assert len(w.matched_before) >= N_A // 2, "the probes must match before the purge for the test to mean much"
        await _collect_secrets(w)
        w.backup = await Backup(database_url, tmp_path_factory.mktemp("backup")).take()
        async with svc.client(keys["admin"]) as admin:
            assert (await admin.post(f"/v1/flights/{flight_a['id']}/state", json={"state": "boarding"})).is_success
            r = await admin.post(f"/v1/flights/{flight_a['id']}/state", json={"state": "departed"})
            assert r.status_code == 200, r.text
        yield w


async def _collect_secrets(w: PurgeWorld) -> None:
    """Everything that could decrypt or is a face template of flight A, before the purge."""
    services, fid = w.svc.services, uuid.UUID(w.flight_a["id"])
    model_id = services.engine.model_id
    key = await services.vault.keystore.pool.fetchrow(
        "SELECT key_id, wrapped FROM flight_data_keys WHERE flight_id = $1", fid)
    async with services.db().acquire() as conn:
        assert await conn.fetchval("SELECT key_id FROM flight_keys WHERE flight_id = $1", fid) == key["key_id"]
        rows = await conn.fetch("SELECT token_id, sealed FROM templates WHERE flight_id = $1", fid)
        dek = await services.vault.flight_key(fid)
    w.key_id = key["key_id"]
    w.secrets["wrapped_key"] = bytes(key["wrapped"])
    w.secrets["data_key"] = dek
    for r in rows:
        w.secrets[f"sealed:{r['token_id']}"] = bytes(r["sealed"])
        plain = TemplateVault.open_template(dek, r["token_id"], model_id, r["sealed"])
        w.secrets[f"template:{r['token_id']}"] = plain.tobytes()
    assert len(rows) == N_A


async def test_the_purge_receipt_names_the_destroyed_key_and_the_counts(world: PurgeWorld) -> None:
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.get(f"/v1/purge-receipts/{world.flight_a['id']}")
        listed = await admin.get("/v1/purge-receipts")
        assert (await admin.get(f"/v1/purge-receipts/{world.flight_b['id']}")).json()["code"] == "receipt_not_found"
    async with world.svc.client(world.keys["kiosk"]) as kiosk:
        assert (await kiosk.get("/v1/purge-receipts")).status_code == 403
    assert r.status_code == 200
    receipt = r.json()
    assert receipt["completed"] and receipt["flight"] == "CX884" and receipt["trigger"] == "departed"
    assert receipt["key_id"] == str(world.key_id) and receipt["kek_id"] == "kek-2026-old"
    assert (receipt["templates_deleted"], receipt["tokens_ended"], receipt["tokens_total"]) == (N_A, N_A, N_A)
    assert receipt["consents_kept"] == N_A
    assert receipt["key_destroyed_at"] <= receipt["completed_at"]
    assert [x["flight_id"] for x in listed.json()["receipts"]] == [world.flight_a["id"]]


async def test_no_table_holds_the_flights_template_bytes_or_data_key_after_the_purge(world: PurgeWorld) -> None:
    services, fid = world.svc.services, uuid.UUID(world.flight_a["id"])
    async with services.db().acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM templates WHERE flight_id = $1", fid) == 0
        assert await conn.fetchval("SELECT count(*) FROM flight_keys WHERE flight_id = $1", fid) == 0
        hits = {}
        for name, secret in world.secrets.items():
            # Raw bytes in every bytea column; base64/hex spellings in every text column for the keys
            # and one template of each kind (the rest are the same shape).
            as_text = name in ("wrapped_key", "data_key") or name.endswith(world.a[0].token_id)
            found = await tables_containing(conn, secret, as_text=as_text)
            if found:
                hits[name] = found
        # Flight B is untouched: the same scan finds its sealed templates (the scan works).
        b_sealed = await conn.fetchval("SELECT sealed FROM templates WHERE token_id = $1",
                                       uuid.UUID(world.b[0].token_id))
        assert await tables_containing(conn, bytes(b_sealed), as_text=False) == ["templates.sealed"]
    assert hits == {}
    assert services.vault.keys.get(flight_context(fid)) is None, "the data key is gone from memory too"
    expired = await services.db().fetch("SELECT DISTINCT state, end_reason FROM tokens WHERE flight_id = $1", fid)
    assert [tuple(r) for r in expired] == [("expired", "flight_departed")]


async def test_its_passengers_match_nowhere_while_other_flights_still_do(world: PurgeWorld) -> None:
    galleries, fid = world.svc.services.galleries, uuid.UUID(world.flight_a["id"])
    assert galleries.flight_size(fid) == 0
    assert not any(galleries.contains(uuid.UUID(p.token_id)) for p in world.a)
    for kind in ("e_channel", "lounge"):
        async with world.svc.client(world.keys[kind]) as device:
            for p in world.matched_before:
                d = await j.identify(device, p.seen_photo)
                assert d["decision"] == "refer" and d["reason"] in ("no_match", "ambiguous_match"), d
                assert "token_id" not in d
    async with world.svc.client(world.keys["e_channel"]) as e_channel:
        b_decisions = [await j.identify(e_channel, p.seen_photo) for p in world.b]
    assert any(d["decision"] == "proceed" for d in b_decisions)
    assert all(d.get("token_id") in {p.token_id for p in world.b} for d in b_decisions if d["decision"] == "proceed")


async def test_purging_again_changes_nothing(world: PurgeWorld) -> None:
    services, fid = world.svc.services, uuid.UUID(world.flight_a["id"])
    async with world.svc.client(world.keys["admin"]) as admin:
        before = (await admin.get(f"/v1/purge-receipts/{fid}")).json()
        again = await purge_flight(services, fid, "grace_elapsed")
        r = await admin.post(f"/v1/flights/{fid}/state", json={"state": "departed"})
        after = (await admin.get(f"/v1/purge-receipts/{fid}")).json()
    assert r.status_code == 200
    assert before == after
    assert again.trigger == "departed" and again.templates_deleted == N_A
    events = await services.db().fetchval("SELECT count(*) FROM audit_events WHERE action = 'flight.purge'"
                                          " AND flight_id = $1", fid)
    assert events == 1
    with pytest.raises(Exception, match="final"):
        await services.db().execute("UPDATE purge_receipts SET templates_deleted = 0 WHERE flight_id = $1", fid)


async def test_the_key_store_holds_a_tombstone_not_the_key(world: PurgeWorld) -> None:
    ks, fid = world.svc.services.vault.keystore, uuid.UUID(world.flight_a["id"])
    async with ks.pool.acquire() as conn:
        assert await tables_containing(conn, world.secrets["wrapped_key"]) == []
        tomb = await conn.fetchrow("SELECT key_id, kek_id FROM destroyed_flight_keys WHERE flight_id = $1", fid)
        assert (tomb["key_id"], tomb["kek_id"]) == (world.key_id, "kek-2026-old")
        # A purged flight can never be given a key again (no late enrolment can resurrect it).
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError):
            await conn.execute("INSERT INTO flight_data_keys (flight_id, key_id, kek_id, wrapped)"
                               " VALUES ($1, gen_random_uuid(), 'k', '\\x00')", fid)


async def test_a_full_dump_taken_before_the_purge_and_restored_after_it_cannot_decrypt_the_flight(
        world: PurgeWorld, admin_dsn: str, database_url: str) -> None:
    """The routine backup brings A's ciphertext back; what would open it does not come back with it.

    The dump is a whole-database ``pg_dump`` of the service database taken while A was live; it is
    restored with ``pg_restore`` into a fresh database after A's purge. The master key is at hand
    (every instance has it). A's data key was never in the service database, so it is not in the
    dump; its only copy, in the key store, was destroyed. B's templates in the same dump still open
    with the key store, and a service started on the restored database searches B, never A.
    """
    services, fid, bid = world.svc.services, uuid.UUID(world.flight_a["id"]), uuid.UUID(world.flight_b["id"])
    model_id, master = services.engine.model_id, MasterKey.parse(OLD_KEK)
    keystore = services.vault.keystore
    backup = world.backup
    assert backup is not None  # taken by the world fixture
    name, url = await create_database(admin_dsn)
    try:
        backup.restore(url)
        conn = await asyncpg.connect(url)
        try:
            a_sealed = await conn.fetch("SELECT token_id, sealed FROM templates WHERE flight_id = $1", fid)
            b_sealed = await conn.fetch("SELECT token_id, sealed FROM templates WHERE flight_id = $1", bid)
            tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables"
                                                                " WHERE schemaname = 'public'")}
            # Nothing in the dump is a key: no key table, and neither A's wrapped nor its raw key anywhere.
            assert not tables & {"flight_data_keys", "watchlist_data_keys", "destroyed_flight_keys"}
            assert await tables_containing(conn, world.secrets["wrapped_key"]) == []
            assert await tables_containing(conn, world.secrets["data_key"]) == []
            marker = await conn.fetchrow("SELECT * FROM flight_keys WHERE flight_id = $1", fid)
            assert marker is not None and set(marker.keys()) == {"flight_id", "key_id", "created_at"}, \
                "the service database keeps the key's id, never the key"
        finally:
            await conn.close()
        assert len(a_sealed) == N_A and len(b_sealed) == N_B, f"the restore ({backup.how}) brought them back"
        assert await keystore.flight_key(fid) is None
        live = await keystore.pool.fetch("SELECT flight_id, kek_id, wrapped FROM flight_data_keys")
        assert bid in {k["flight_id"] for k in live} and fid not in {k["flight_id"] for k in live}
        # Every data key that still exists anywhere, with the master key, fails on every template of A.
        for k in live:
            dek = master.unwrap(WrappedKey(k["kek_id"], bytes(k["wrapped"])), flight_context(k["flight_id"]))
            for r in a_sealed:
                with pytest.raises(DecryptionError):
                    TemplateVault.open_template(dek, r["token_id"], model_id, r["sealed"])
        # The same dump is a good backup of B: its templates open with B's key from the key store.
        b_dek = await services.vault.flight_key(bid)
        for r in b_sealed:
            assert np.isclose(np.linalg.norm(TemplateVault.open_template(b_dek, r["token_id"], model_id,
                                                                         r["sealed"])), 1.0, atol=1e-3)
        # A service brought up on the restored database, sharing the live key store, loads B and not A.
        restored = services.settings.replace(database_url=url,
                                           keystore_url=sibling_database(database_url)[1])
        async with run_service(restored, engine=services.engine) as again:
            galleries = again.services.galleries
            assert (galleries.flight_size(fid), galleries.flight_size(bid)) == (0, N_B)
            async with again.client(world.keys["e_channel"]) as e_channel:
                for p in world.matched_before:
                    d = await j.identify(e_channel, p.seen_photo)
                    assert d.get("token_id") not in {q.token_id for q in world.a}, d
    finally:
        await drop_database(admin_dsn, name)
