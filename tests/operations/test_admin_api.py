"""The airline operations admin API over real HTTP, PostgreSQL and face models: schedule import,
flight updates, progress, token lookup and revocation, device keys, metrics. Each action audited."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flighttoken.devices.model import DeviceKind
from tests.operations.people import Passenger, add_key, candidates, enrol
from tests.support import journey as j
from tests.support.world import World

CSV_HEADER = "airline,number,scheduled_departure,destination,gate,international,booked\n"



@dataclass(kw_only=True)
class AdminWorld(World):
    people: Iterator[tuple[str, list[Path]]]  # LFW people not yet enrolled, in a stable order


def _at(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0).isoformat()


@pytest.fixture(scope="module")
async def world(make_service):
    settings = make_service.settings()
    async with make_service(settings) as svc:
        keys = await j.make_devices(svc.services.db())
        keys["cx_ops"] = await add_key(svc, DeviceKind.AIRLINE_OPS, airline="CX")
        yield AdminWorld(svc=svc, keys=keys, people=candidates(settings.faces_dir))


async def _count(world: AdminWorld, sql: str, *args) -> int:
    async with world.svc.services.db().acquire() as conn:
        return await conn.fetchval(sql, *args)


async def _audited(world: AdminWorld, action: str, **where) -> int:
    clauses = "".join(f" AND {k} = ${i}" for i, k in enumerate(where, start=2))
    return await _count(world, f"SELECT count(*) FROM audit_events WHERE action = $1{clauses}", action,
                        *where.values())


# ---- schedule import -------------------------------------------------------------------------------

async def test_a_csv_schedule_imports_every_flight_with_its_booked_count(world: AdminWorld) -> None:
    csv = CSV_HEADER + f"CX,500,{_at(120)},LAX,30,true,280\nCX,501,{_at(130)},SFO,,false,\n"
    async with world.svc.client(world.keys["cx_ops"]) as ops:
        r = await ops.post("/v1/flights/import", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["imported"] == 2
    by_number = {f["number"]: f for f in body["flights"]}
    assert by_number["500"]["booked"] == 280 and by_number["500"]["gate"] == "30"
    assert by_number["501"]["booked"] is None and by_number["501"]["international"] is False
    assert await _audited(world, "flight.create") >= 2
    assert await _audited(world, "flight.import", outcome="ok") == 1


async def test_a_csv_with_one_bad_line_imports_nothing_and_names_the_line(world: AdminWorld) -> None:
    before = await _count(world, "SELECT count(*) FROM flights")
    csv = (CSV_HEADER + f"CX,510,{_at(120)},LAX,31,true,100\n"
                        f"CX,511,{_at(125)},LAX,32,true,100\n"
                        f"CX,512,tomorrow-ish,LAX,33,true,100\n"
                        f"CX,513,{_at(135)},LAX,34,true,100\n")
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post("/v1/flights/import", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "schedule_invalid"
    assert [(e["line"], e["field"]) for e in problem["errors"]] == [(4, "scheduled_departure")]
    assert "tomorrow-ish" in problem["errors"][0]["message"]
    assert "line 4" in problem["detail"]
    assert await _count(world, "SELECT count(*) FROM flights") == before
    assert await _count(world, "SELECT count(*) FROM flights WHERE number IN ('510', '511', '513')") == 0
    assert await _audited(world, "flight.import", outcome="refused") >= 1


async def test_a_json_schedule_imports_and_an_existing_flight_refuses_the_whole_file(world: AdminWorld) -> None:
    departure = _at(140)
    flights = [{"airline": "KA", "number": "600", "scheduled_departure": departure, "destination": "PEK",
                "gate": "40", "booked": 150}]
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post("/v1/flights/import", json=flights)
        assert r.status_code == 201, r.text
        again = [*flights, {"airline": "KA", "number": "601", "scheduled_departure": departure,
                             "destination": "PEK"}]
        r = await admin.post("/v1/flights/import", json={"flights": again[::-1]})
        assert r.status_code == 422
        assert [(e["line"], "already exists" in e["message"]) for e in r.json()["errors"]] == [(2, True)]
        assert await _count(world, "SELECT count(*) FROM flights WHERE airline = 'KA' AND number = '601'") == 0
        r = await admin.post("/v1/flights/import", content=b"<xml/>", headers={"Content-Type": "application/xml"})
        assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type")


async def test_an_airline_key_cannot_import_or_create_another_airlines_flights(world: AdminWorld) -> None:
    async with world.svc.client(world.keys["cx_ops"]) as ops:
        r = await ops.post("/v1/flights/import", content=CSV_HEADER + f"KA,700,{_at(100)},PEK,1,true,1\n",
                           headers={"Content-Type": "text/csv"})
        assert r.status_code == 422
        assert [(e["line"], e["field"]) for e in r.json()["errors"]] == [(2, "airline")]
        r = await ops.post("/v1/flights", json={"airline": "KA", "number": "701", "destination": "PEK",
                                                "scheduled_departure": _at(100)})
        assert (r.status_code, r.json()["code"]) == (403, "airline_mismatch")


# ---- lists and flight updates ------------------------------------------------------------------------

async def test_lists_show_today_by_default_and_an_airline_key_only_its_flights(world: AdminWorld) -> None:
    async with world.svc.client(world.keys["admin"]) as admin, world.svc.client(world.keys["cx_ops"]) as ops:
        everyone = (await admin.get("/v1/flights")).json()["flights"]
        mine = (await ops.get("/v1/flights")).json()["flights"]
        assert {f["airline"] for f in everyone} == {"CX", "KA"}
        assert mine and {f["airline"] for f in mine} == {"CX"}
        day = datetime.now(UTC).date() + timedelta(days=30)
        assert (await admin.get("/v1/flights", params={"date": day.isoformat()})).json()["flights"] == []
        r = await admin.get("/v1/flights", params={"start": _at(0), "end": _at(60 * 24 * 30)})
        assert (r.status_code, r.json()["code"]) == (400, "invalid_range")
        r = await admin.get("/v1/flights", params={"start": _at(0)})
        assert (r.status_code, r.json()["code"]) == (400, "invalid_range")


async def test_state_actions_move_the_flight_and_are_audited(world: AdminWorld) -> None:
    async with world.svc.client(world.keys["cx_ops"]) as ops:
        flight = (await ops.post("/v1/flights", json={"airline": "CX", "number": "520", "destination": "NRT",
                                                      "gate": "50", "scheduled_departure": _at(90)})).json()
        fid = flight["id"]
        assert (await ops.post(f"/v1/flights/{fid}/boarding")).json()["state"] == "boarding"
        closed = (await ops.post(f"/v1/flights/{fid}/close")).json()
        assert closed["state"] == "closed" and closed["boarding_closed_at"]
        r = await ops.post(f"/v1/flights/{fid}/boarding")
        assert (r.status_code, r.json()["code"]) == (409, "invalid_transition")
        r = await ops.post(f"/v1/flights/{fid}/gate", json={"gate": "51"})
        assert (r.status_code, r.json()["code"]) == (409, "flight_closed")
        assert (await ops.post(f"/v1/flights/{fid}/depart")).json()["state"] == "departed"
        other = (await ops.post("/v1/flights", json={"airline": "CX", "number": "521", "destination": "NRT",
                                                     "scheduled_departure": _at(95)})).json()
        assert (await ops.post(f"/v1/flights/{other['id']}/cancel")).json()["state"] == "cancelled"
    for action in ("flight.boarding", "flight.closed", "flight.departed"):
        assert await _audited(world, action, flight_id=uuid.UUID(fid)) == 1, action


async def test_a_gate_change_takes_effect_at_once(world: AdminWorld) -> None:
    async with world.svc.client(world.keys["admin"]) as admin, world.svc.client(world.keys["kiosk"]) as kiosk, \
            world.svc.client(world.keys["e_channel"]) as e_channel:
        flight = await j.create_flight(admin, "530", "23")
        p = await enrol(kiosk, world.people, flight["id"], 1100, e_channel)
        assert (await admin.post(f"/v1/flights/{flight['id']}/boarding")).status_code == 200
        r = await admin.post(f"/v1/flights/{flight['id']}/gate", json={"gate": "24"})
        assert r.status_code == 200 and r.json()["gate"] == "24"
    async with world.svc.client(world.keys["gate23"]) as gate23:
        d = await j.identify(gate23, p.seen_photo)
        assert (d["decision"], d["reason"]) == ("refer", "gate_not_boarding")
    async with world.svc.client(world.keys["gate24"]) as gate24:
        d = await j.identify(gate24, p.seen_photo)
        assert (d["decision"], d["token_id"]) == ("proceed", p.token_id)
    assert await _audited(world, "flight.gate_change", flight_id=uuid.UUID(flight["id"])) == 1
    world.boarded = (flight, p)  # type: ignore[attr-defined]


async def test_progress_counts_the_journey(world: AdminWorld) -> None:
    flight, p = world.boarded  # type: ignore[attr-defined]
    async with world.svc.client(world.keys["gate24"]) as gate24:
        again = await j.identify(gate24, p.seen_photo)
    assert again["reason"] == "already_boarded"
    async with world.svc.client(world.keys["cx_ops"]) as ops:
        r = await ops.get(f"/v1/flights/{flight['id']}/progress")
    assert r.status_code == 200, r.text
    progress = r.json()
    enrolled = await _count(world, "SELECT count(*) FROM tokens WHERE flight_id = $1", uuid.UUID(flight["id"]))
    assert progress["enrolled"] == enrolled >= 1
    assert (progress["immigration_cleared"], progress["boarded"], progress["in_lounge"]) == (1, 1, 0)
    assert progress["booked"] is None and progress["expected"] == enrolled
    assert progress["referred_by_reason"].get("already_boarded") == 1
    assert progress["referred"] == sum(progress["referred_by_reason"].values())


async def test_a_delay_moves_the_flights_tokens_to_their_new_departure_window(world: AdminWorld) -> None:
    galleries, window_s = world.svc.services.galleries, world.svc.services.settings.galleries.window_seconds
    async with world.svc.client(world.keys["admin"]) as admin, world.svc.client(world.keys["kiosk"]) as kiosk:
        flight = await j.create_flight(admin, "540", "25", in_minutes=60)
        await enrol(kiosk, world.people, flight["id"], 1200)
        old_window = datetime.fromisoformat(flight["window_start"])
        assert galleries.window_size(old_window) >= 1
        in_old = galleries.window_size(old_window)
        r = await admin.post(f"/v1/flights/{flight['id']}/delay", json={"minutes": window_s // 60, "reason": "ATC"})
        assert r.status_code == 200, r.text
        moved = r.json()
        new_window = datetime.fromisoformat(moved["window_start"])
        assert new_window == old_window + timedelta(seconds=window_s)
        assert galleries.window_size(new_window) == 1
        assert galleries.window_size(old_window) == in_old - 1
        r = await admin.post(f"/v1/flights/{flight['id']}/delay", json={"minutes": 5, "scheduled_departure": _at(9)})
        assert (r.status_code, r.json()["code"]) == (400, "invalid_delay")
    detail = await _count(world, "SELECT detail->>'reason' FROM audit_events WHERE action = 'flight.delay'"
                                 " AND flight_id = $1", uuid.UUID(flight["id"]))
    assert detail == "ATC"


# ---- tokens ----------------------------------------------------------------------------------------

async def test_tokens_are_found_by_booking_reference_or_document_and_revoked(world: AdminWorld) -> None:
    async with world.svc.client(world.keys["admin"]) as admin, world.svc.client(world.keys["kiosk"]) as kiosk, \
            world.svc.client(world.keys["e_channel"]) as e_channel:
        flight = await j.create_flight(admin, "550", "26")
        p: Passenger = await enrol(kiosk, world.people, flight["id"], 1300)
        found = (await admin.get("/v1/tokens", params={"booking_reference": p.booking_reference.lower()})).json()
        assert [t["id"] for t in found["tokens"]] == [p.token_id]
        assert found["tokens"][0]["document_last4"] == p.document[-4:]
        assert "document_number" not in found["tokens"][0]
        by_doc = (await admin.get("/v1/tokens", params={"document_number": p.document,
                                                        "issuing_state": "HKG"})).json()["tokens"]
        assert [t["id"] for t in by_doc] == [p.token_id]
        r = await admin.get("/v1/tokens", params={"document_number": p.document})
        assert (r.status_code, r.json()["code"]) == (400, "lookup_required")

        r = await admin.post(f"/v1/tokens/{p.token_id}/revoke", json={"reason": "offloaded", "note": "missed"})
        assert r.status_code == 200 and r.json()["state"] == "revoked" and r.json()["end_reason"] == "offloaded"
        assert not world.svc.services.galleries.contains(uuid.UUID(p.token_id))
        assert await _count(world, "SELECT count(*) FROM templates WHERE token_id = $1", uuid.UUID(p.token_id)) == 0
        d = await j.identify(e_channel, p.seen_photo)
        assert d["decision"] == "refer" and d.get("token_id") is None
        assert (await admin.post(f"/v1/tokens/{p.token_id}/revoke", json={"reason": "other"})).status_code == 200
        r = await admin.post(f"/v1/tokens/{p.token_id}/revoke", json={"reason": "because"})
        assert r.status_code == 400
    assert await _audited(world, "token.revoke", token_id=uuid.UUID(p.token_id)) == 1
    assert await _audited(world, "token.lookup") >= 2


# ---- devices ---------------------------------------------------------------------------------------

async def test_devices_are_added_disabled_and_rotated_and_keys_stop_working_at_once(world: AdminWorld) -> None:
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post("/v1/devices", json={"name": "gate-60", "kind": "gate", "gate": "60", "terminal": "T1"})
        assert r.status_code == 201, r.text
        device, key = r.json()["device"], r.json()["api_key"]
        assert device["disabled_at"] is None and key.startswith("ftk_")
        r = await admin.post("/v1/devices", json={"name": "gate-60", "kind": "gate", "gate": "61"})
        assert (r.status_code, r.json()["code"]) == (409, "device_exists")
        r = await admin.post("/v1/devices", json={"name": "gate-x", "kind": "gate"})
        assert (r.status_code, r.json()["code"]) == (400, "gate_required")
        r = await admin.post("/v1/devices", json={"name": "ops-ka", "kind": "airline_ops", "airline": "KA"})
        assert r.status_code == 201 and r.json()["device"]["airline"] == "KA"
        ka_ops_id = r.json()["device"]["id"]

        async with world.svc.client(key) as gate:
            assert (await gate.get("/v1/flights")).status_code == 403  # authenticated, not allowed
            r = await admin.post(f"/v1/devices/{device['id']}/rotate-key")
            assert r.status_code == 200
            new_key = r.json()["api_key"]
            assert (await gate.get("/v1/flights")).status_code == 401  # the old key, at once
        async with world.svc.client(new_key) as gate:
            assert (await gate.get("/v1/flights")).status_code == 403
            r = await admin.post(f"/v1/devices/{device['id']}/disable")
            assert r.status_code == 200 and r.json()["disabled_at"]
            assert (await gate.get("/v1/flights")).status_code == 401
        r = await admin.post(f"/v1/devices/{device['id']}/rotate-key")
        assert (r.status_code, r.json()["code"]) == (409, "device_disabled")
        me = next(d for d in (await admin.get("/v1/devices")).json()["devices"] if d["name"] == "test-admin")
        r = await admin.post(f"/v1/devices/{me['id']}/disable")
        assert (r.status_code, r.json()["code"]) == (409, "cannot_disable_self")
        assert (await admin.get(f"/v1/devices/{uuid.uuid4()}")).status_code == 404
    async with world.svc.client(world.keys["cx_ops"]) as ops:
        assert (await ops.post(f"/v1/devices/{ka_ops_id}/disable")).status_code == 403
    for action in ("device.add", "device.rotate_key", "device.disable"):
        assert await _audited(world, action) >= 1, action


# ---- metrics ---------------------------------------------------------------------------------------

async def test_metrics_show_latency_decisions_galleries_batches_purges_and_the_pool(world: AdminWorld) -> None:
    async with world.svc.client() as anonymous:
        r = await anonymous.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'flighttoken_decisions_total{decision="proceed",reason="matched",touchpoint="gate"}' in text
    assert 'flighttoken_decisions_total{decision="refer",reason="already_boarded",touchpoint="gate"}' in text
    assert ('flighttoken_http_request_duration_seconds_bucket{device_kind="gate",le="+Inf",method="POST",'
            'route="/v1/identify",status="2xx"}') in text
    assert 'route="/v1/flights/{flight_id}/progress"' in text
    for family in ("flighttoken_gallery_faces{kind=\"window\"}", "flighttoken_galleries{kind=\"flight\"}",
                   "flighttoken_engine_batch_size_bucket", "flighttoken_purge_lag_seconds",
                   "flighttoken_purges_overdue", 'flighttoken_db_pool_connections{state="in_use"}',
                   "flighttoken_db_pool_max"):
        assert family in text, family
    assert json.dumps("ftk_") not in text  # never a key
