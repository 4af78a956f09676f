"""Recovering travel document numbers from the service database (issue 16).

The red team's attack: take a dump of the service database and enumerate document numbers against the
stored document keys (an unkeyed SHA-256 of ``state|type|number`` gave back 7 of 7 numbers from 70,907
hashes in 0.13 s), helped by ``document_last4``, which outlived the token. After the fix a document key
is an HMAC under a key kept wrapped in the key store, and the last four go when the token ends.

Everything runs against a real service over HTTP with real PostgreSQL and LFW faces; the dump is a real
``pg_dump`` of the service database, with the client tools of the server's own major version.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from flighttoken.crypto.keys import MasterKey, generate_master_key
from flighttoken.db.keystore import KeyStore
from flighttoken.db.migrate import apply_migrations, discover
from flighttoken.db.pool import create_pool
from flighttoken.db.queries import flights as flight_q
from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.flights.model import Flight, FlightState
from flighttoken.flights.windows import window_start
from flighttoken.privacy.rotation import rotate
from flighttoken.testing import create_database, drop_database, identities
from tests.privacy.helpers import TERMS_SHA, pg_client_dir
from tests.support import journey as j
from tests.support.world import Passenger, World

KEK_A, KEK_B = generate_master_key("kek-doc-a"), generate_master_key("kek-doc-b")
# Last four characters no dump could hold by chance: no hex digit, no digit, not in any name used here.
SUFFIXES = ["".join(p) for p in itertools.permutations("JQWXZ", 4)]




def _document(p: Passenger) -> dict:
    return {"type": "P", "number": p.document, "issuing_state": "HKG"}


@dataclass(kw_only=True)
class RecoveryWorld(World):
    dump: bytes = b""


async def _enrol(svc, key: str, flight: dict, people, count: int, start: int) -> list[Passenger]:
    out = []
    async with svc.client(key) as kiosk:
        for i, (_, photos) in enumerate(people, start):
            number, booking = f"M{8000 + i}{SUFFIXES[i]}", f"BK{i:04d}"
            body = j.enrolment(photos[0], flight["id"], document_number=number)
            body["booking"]["booking_reference"] = booking
            r = await kiosk.post("/v1/enrolments", json=body)
            if r.status_code == 201:
                out.append(Passenger(document=number, token_id=r.json()["token_id"], flight=flight["id"],
                                     booking_reference=booking))
            if len(out) == count:
                return out
    raise AssertionError(f"only {len(out)} of {count} enrolments succeeded")


def _pg_dump(url: str, major: int, out: Path) -> bytes:
    tools = pg_client_dir(major)
    assert tools is not None, f"no pg_dump for PostgreSQL {major}: install its client tools"
    subprocess.run([str(tools / "pg_dump"), f"--dbname={url}", "--format=plain", "--no-owner",
                    f"--file={out}"], check=True, timeout=120)
    return out.read_bytes()


@pytest.fixture(scope="module")
async def world(make_service, database_url, tmp_path_factory):
    """Flight A: three passengers, then purged. Flight B: four; one opts out, one is revoked, two live."""
    settings = make_service.settings(master_key=KEK_A, purge_sweep_interval_s=3600)
    async with make_service(settings) as svc:
        keys = await j.make_devices(svc.services.db())
        async with svc.client(keys["admin"]) as admin:
            flight_a = await j.create_flight(admin, "610", "23")
            flight_b = await j.create_flight(admin, "612", "24", in_minutes=90)
        people = identities(settings.faces_dir, min_photos=1)[700:760]
        w = RecoveryWorld(svc=svc, keys=keys)
        w.passengers = await _enrol(svc, keys["kiosk"], flight_a, people[:30], 3, 0)
        w.passengers += await _enrol(svc, keys["kiosk"], flight_b, people[30:], 4, 30)
        a, b = w.passengers[:3], w.passengers[3:]
        async with svc.client(keys["kiosk"]) as kiosk:
            r = await kiosk.post("/v1/opt-outs", json={"booking_reference": b[0].booking_reference,
                                                       "document": _document(b[0])})
            assert r.status_code == 200 and r.json()["tokens_revoked"] == 1, r.text
        async with svc.client(keys["admin"]) as admin:
            r = await admin.post(f"/v1/tokens/{b[1].token_id}/revoke", json={"reason": "other"})
            assert r.status_code == 200, r.text
            r = await admin.get("/v1/tokens", params={"document_number": b[2].document, "issuing_state": "HKG"})
            assert [t["id"] for t in r.json()["tokens"]] == [b[2].token_id], r.text
            assert (await admin.post(f"/v1/flights/{flight_a['id']}/state", json={"state": "boarding"})).is_success
            r = await admin.post(f"/v1/flights/{flight_a['id']}/state", json={"state": "departed"})
            assert r.status_code == 200, r.text
        for p in [*a, b[0], b[1]]:
            p.ended = True
        major = int(await svc.services.db().fetchval("SHOW server_version_num")) // 10000
        w.dump = _pg_dump(database_url, major, tmp_path_factory.mktemp("dump") / "service.sql")
        yield w


def unkeyed_digest(state: str, doc_type: str, number: str) -> bytes:
    """The document key before the fix, as the old code computed it."""
    return hashlib.sha256(f"{state}|{doc_type}|{number}".encode()).digest()


def _spellings(digest: bytes) -> list[bytes]:
    """How a digest shows in a plain dump: raw, hex (bytea and text), base64."""
    b64 = base64.b64encode(digest).rstrip(b"=")
    return [digest, digest.hex().encode(), digest.hex().upper().encode(), b64,
            base64.urlsafe_b64encode(digest).rstrip(b"=")]


def _unkeyed_digests(number: str) -> dict[str, bytes]:
    out = {}
    for text in (f"HKG|P|{number}", number):
        for algo in ("sha256", "sha1", "md5"):
            out[f"{algo}({text})"] = hashlib.new(algo, text.encode()).digest()
    return out


async def test_a_dump_of_the_service_database_gives_back_no_document_number(world: RecoveryWorld) -> None:
    dump = world.dump
    assert b"COPY public.tokens" in dump and b"COPY public.consents" in dump
    found = []
    for p in world.passengers:
        if p.document.encode() in dump:
            found.append(f"{p.document}: the number itself")
        for name, digest in _unkeyed_digests(p.document).items():
            if any(s in dump for s in _spellings(digest)):
                found.append(f"{p.document}: {name}")
        if p.ended and p.document[-4:].encode() in dump:
            found.append(f"{p.document}: last four {p.document[-4:]} of an ended token")
    assert found == []
    # The scan looks where a digest would be: the dump holds each keyed document key, spelt in hex.
    for p in world.passengers:
        assert world.svc.services.document_keys.of("HKG", "P", p.document).hex().encode() in dump, p
    live = [p for p in world.passengers if not p.ended]
    assert len(live) == 2 and all(f"\t{p.document[-4:]}\t".encode() in dump for p in live), \
        "a live token keeps its last four (and the dump would show them)"


async def test_an_ended_token_keeps_no_last_four_whichever_way_it_ended(world: RecoveryWorld) -> None:
    rows = await world.svc.services.db().fetch("SELECT id, state, end_reason, document_last4 FROM tokens")
    by_id = {str(r["id"]): r for r in rows}
    ended = {by_id[p.token_id]["end_reason"]: by_id[p.token_id]["document_last4"]
             for p in world.passengers if p.ended}
    assert ended == {"opted_out": None, "other": None, "flight_departed": None}
    assert [by_id[p.token_id]["document_last4"] for p in world.passengers if not p.ended] == \
        [p.document[-4:] for p in world.passengers if not p.ended]


# ---- a deployment from before migration 0010 --------------------------------------------------------


async def _pre_0010_database(admin_dsn: str) -> tuple[str, str, dict]:
    """Migrations up to 0009 and rows as the old code wrote them: SHA-256 document keys, last four kept
    on ended tokens."""
    name, url = await create_database(admin_dsn)
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn, [m for m in discover() if m.version < 10])
        kiosk, _ = await add_device(conn, name="legacy-kiosk", kind=DeviceKind.KIOSK)
        departure = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
        flight = Flight(id=uuid.uuid4(), airline="CX", number="620", scheduled_departure=departure,
                        window_start=window_start(departure, 7200), destination="LAX", international=True,
                        state=FlightState.SCHEDULED, gate="23")
        await flight_q.insert(conn, flight)
        rows = {}
        for number, booking, state in (("L7700QJXZ", "LG0001", "enrolled"), ("L7701ZWXQ", "LG0002", "revoked")):
            consent, token = uuid.uuid4(), uuid.uuid4()
            digest = unkeyed_digest("HKG", "P", number)
            await conn.execute("INSERT INTO consents (id, flight_id, document_key, terms_version, terms_sha256,"
                               " consented_at, device_id) VALUES ($1, $2, $3, 'v1', $4, now(), $5)",
                               consent, flight.id, digest, TERMS_SHA, kiosk.id)
            await conn.execute(
                "INSERT INTO tokens (id, flight_id, document_key, document_type, document_last4, issuing_state,"
                " nationality, surname, given_names, booking_reference, state, consent_id, ended_at)"
                " VALUES ($1, $2, $3, 'P', $4, 'HKG', 'HKG', 'Legacy', 'Pax', $5, $6, $7,"
                " CASE WHEN $6 = 'revoked' THEN now() END)",
                token, flight.id, digest, number[-4:], booking, state, consent)
            rows[number] = {"token": token, "booking": booking, "digest": digest}
    finally:
        await conn.close()
    return name, url, rows


async def test_pre_0010_sha256_document_keys_are_keyed_at_start_and_still_found(
        make_service, admin_dsn) -> None:
    name, url, legacy = await _pre_0010_database(admin_dsn)
    live, ended = "L7700QJXZ", "L7701ZWXQ"
    try:
        settings = make_service.settings(database_url=url, master_key=KEK_A,
                                           purge_sweep_interval_s=3600)
        keys: dict[str, str] = {}
        for start in range(2):  # the second start must not key the keys again
            async with make_service(settings) as svc:
                pool = svc.services.db()
                stored = {r["document_key"] for r in await pool.fetch(
                    "SELECT document_key FROM tokens UNION ALL SELECT document_key FROM consents")}
                assert not stored & {row["digest"] for row in legacy.values()}, "an unkeyed digest is left"
                doc_keys = svc.services.document_keys
                assert stored == {doc_keys.of("HKG", "P", n) for n in legacy}, f"start {start}"
                assert await pool.fetchval("SELECT document_last4 FROM tokens WHERE id = $1",
                                           legacy[ended]["token"]) is None
                keys = keys or await j.make_devices(pool)
                async with svc.client(keys["admin"]) as admin:
                    r = await admin.get("/v1/tokens", params={"document_number": live, "issuing_state": "HKG"})
                    assert [t["id"] for t in r.json()["tokens"]] == [str(legacy[live]["token"])], r.text
                    assert r.json()["tokens"][0]["document_last4"] == live[-4:]
        async with make_service(settings) as svc, svc.client(keys["kiosk"]) as kiosk:
            document = {"type": "P", "number": live, "issuing_state": "HKG"}
            r = await kiosk.post("/v1/opt-outs", json={"booking_reference": legacy[live]["booking"],
                                                      "document": document})
            assert r.status_code == 200 and r.json()["tokens_revoked"] == 1, r.text
            row = await svc.services.db().fetchrow("SELECT state, document_last4 FROM tokens WHERE id = $1",
                                                   legacy[live]["token"])
            assert (row["state"], row["document_last4"]) == ("revoked", None)
            withdrawn = await svc.services.db().fetchval("SELECT count(*) FROM consents WHERE withdrawn_at IS NOT NULL")
            assert withdrawn == 1
    finally:
        await drop_database(admin_dsn, name)


# ---- master key rotation ----------------------------------------------------------------------------


async def test_after_master_key_rotation_document_look_ups_still_find_the_passenger(
        make_service, admin_dsn) -> None:
    """Enrol under KEK A; rotate to B; retire A. The document MAC key was rewrapped, not replaced, so
    look-up and opt-out by document still find the passenger with B alone."""
    name, url = await create_database(admin_dsn)
    try:
        settings = make_service.settings(database_url=url, master_key=KEK_A,
                                           purge_sweep_interval_s=3600)
        async with make_service(settings) as svc:
            keys = await j.make_devices(svc.services.db())
            async with svc.client(keys["admin"]) as admin:
                flight = await j.create_flight(admin, "630", "23")
            [p] = await _enrol(svc, keys["kiosk"], flight, identities(settings.faces_dir)[800:830], 1, 100)
        assert await _stored_document_key(url, p.token_id) != unkeyed_digest("HKG", "P", p.document)

        pool = await create_pool(url, settings)
        keystore = await KeyStore.open(url, settings)
        try:
            mac_key = await keystore.document_mac_key()
            assert mac_key is not None
            key_id, before = mac_key
            report = await rotate(keystore, pool, MasterKey.parse(f"{KEK_B},{KEK_A}"))
            assert report.unreadable == 0
            after = await keystore.document_mac_key()
            assert after is not None
            assert before.kek_id == "kek-doc-a" and after[1].kek_id == "kek-doc-b"
        finally:
            await keystore.close()
            await pool.close()

        only_b = settings.replace(master_key=KEK_B)
        async with make_service(only_b) as svc:
            assert svc.services.document_keys.key_id == key_id
            async with svc.client(keys["admin"]) as admin:
                r = await admin.get("/v1/tokens", params={"document_number": p.document, "issuing_state": "HKG"})
                assert [t["id"] for t in r.json()["tokens"]] == [p.token_id], r.text
            async with svc.client(keys["kiosk"]) as kiosk:
                r = await kiosk.post("/v1/opt-outs", json={"booking_reference": p.booking_reference,
                                                           "document": _document(p)})
                assert r.status_code == 200 and r.json()["tokens_revoked"] == 1, r.text
    finally:
        await drop_database(admin_dsn, name)


async def _stored_document_key(url: str, token_id: str) -> bytes:
    conn = await asyncpg.connect(url)
    try:
        return bytes(await conn.fetchval("SELECT document_key FROM tokens WHERE id = $1", uuid.UUID(token_id)))
    finally:
        await conn.close()
