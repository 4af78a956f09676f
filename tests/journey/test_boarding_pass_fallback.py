"""The boarding-pass 1:1 fallback (issue 20 part 2) over real HTTP, real PostgreSQL and the real face
models: a ``Boarding-Pass`` header names a token, the live face is verified against it 1:1, then the
same journey rules and watchlist screening as face-only. Malformed passes are 422 naming the item and
record nothing; a pass for another date or another person is never accepted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest

from flighttoken.testing import identities
from tests.support import journey as j
from tests.support.world import Passenger, World
from tests.watchlist.helpers import extra_keys, pick_subject, subject_body

pytestmark = pytest.mark.slow


bcbp = j.boarding_pass


def pass_of(p: Passenger, day: date, *, number: str = "884", pnr: str | None = None, to: str = "LAX") -> str:
    return bcbp(p.name, "Tai Man", pnr or p.booking_reference, number, day, to=to)


@dataclass(kw_only=True)
class PassWorld(World):
    today: date
    tomorrow: date
    subject: Passenger


def _clear(engine, photos: list[Path]) -> bool:
    a, b = (engine.analyse_sync(p.read_bytes()) for p in photos[:2])
    if not (a.quality_ok and b.quality_ok) or a.tailgating or b.tailgating:
        return False
    return float(a.template.vector @ b.template.vector) >= 0.6


@pytest.fixture(scope="module")
async def world(make_service, face_engine):
    settings = make_service.settings(secondary_referral_share=0.0)  # no random referral in these answers
    subject = pick_subject(face_engine, settings.faces_dir, settings.watchlist.watchlist_threshold,
                           settings.decisions.e_channel_threshold)
    async with make_service(settings, authority=True) as svc:
        pool = svc.services.db()
        keys = {**await j.make_devices(pool), **await extra_keys(pool)}
        async with svc.client(keys["admin"]) as admin:
            today_flight = await j.create_flight(admin, "884", "23")
            tomorrow_flight = await j.create_flight(admin, "884", "24", in_minutes=25 * 60)
        async with svc.authority_client(keys["authority"]) as authority:
            r = await authority.post("/v1/watchlist/subjects", json=subject_body([subject.watchlist_photo]))
            assert r.status_code == 201, r.text
        chosen = []
        for name, photos in identities(settings.faces_dir, min_photos=2):
            if name != subject.name and _clear(face_engine, photos):
                chosen.append(photos)
            if len(chosen) == 3:
                break
        # BCBP names are letters only: the surnames are too.
        people = [Passenger(name=("Alpha", "Bravo", "Charlie")[i], enrol_photo=p[0], probe=p[1],
                            document=j.document_number(i), flight=(today_flight if i < 2 else tomorrow_flight)["id"])
                  for i, p in enumerate(chosen)]
        people.append(Passenger(name="Lee", enrol_photo=subject.enrol_photo, probe=subject.probe_photo,
                                document="W00000001", flight=today_flight["id"]))
        async with svc.client(keys["kiosk"]) as kiosk:
            for p in people:
                body = j.enrolment(p.photo, p.flight, document_number=p.document, surname=p.name)
                r = await kiosk.post("/v1/enrolments", json=body)
                assert r.status_code == 201, r.text
                p.token_id, p.booking_reference = r.json()["token_id"], body["booking"]["booking_reference"]
        today = datetime.fromisoformat(today_flight["scheduled_departure"]).date()  # the airport's zone is UTC here
        tomorrow = datetime.fromisoformat(tomorrow_flight["scheduled_departure"]).date()
        yield PassWorld(svc=svc, keys=keys, flights={"today": today_flight, "tomorrow": tomorrow_flight},
                        passengers=people[:3], subject=people[3], today=today, tomorrow=tomorrow)


async def _identify(world: PassWorld, key: str, photo: Path, boarding_pass: str | None):
    headers = {"Content-Type": "image/jpeg"}
    if boarding_pass is not None:
        headers["Boarding-Pass"] = boarding_pass
    async with world.svc.client(world.keys[key]) as client:
        return await client.post("/v1/identify", content=photo.read_bytes(), headers=headers)


async def _decide(world: PassWorld, key: str, photo: Path, boarding_pass: str) -> dict:
    r = await _identify(world, key, photo, boarding_pass)
    assert r.status_code == 200, r.text
    return r.json()


async def _events(world: PassWorld) -> int:
    return await world.svc.services.db().fetchval("SELECT count(*) FROM journey_events")


@pytest.mark.parametrize(("broken", "field"), [
    (lambda s: s.replace("HKGLAX", "HK1LAX"), "from_airport"),
    (lambda s: s[:-16] + "000" + s[-13:], "julian_date"),
    (lambda s: s[:42], "flight_number"),  # cut short inside the item
    (lambda s: "X" + s[1:], "format_code"),
    (lambda s: s[:-2] + "ZZ", "conditional_size"),
])
async def test_a_malformed_pass_is_422_naming_the_item_and_records_nothing(world, broken, field) -> None:
    p = world.passengers[0]
    good = pass_of(p, world.today)
    before = await _events(world)
    r = await _identify(world, "e_channel", p.seen_photo, broken(good))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert (body["code"], body["field"]) == ("invalid_boarding_pass", field)
    assert field in body["detail"]
    assert await _events(world) == before


async def test_a_pass_that_names_no_token_is_no_token(world) -> None:
    p = world.passengers[0]
    for boarding_pass in (pass_of(p, world.today, pnr="ZZZ999"),  # another booking
                          bcbp("Other", "Person", p.booking_reference, "884", world.today),  # another name
                          pass_of(p, world.today, number="886"),  # another flight
                          pass_of(p, world.today, to="SFO"),  # the flight's number, another destination
                          pass_of(p, world.tomorrow)):  # the same flight number, another day
        d = await _decide(world, "e_channel", p.seen_photo, boarding_pass)
        assert (d["decision"], d["reason"], d["method"]) == ("refer", "no_token", "boarding_pass"), boarding_pass
        assert "token_id" not in d


async def test_a_pass_for_another_date_is_refused_after_the_face(world) -> None:
    later = world.passengers[2]  # enrolled on tomorrow's CX884
    d = await _decide(world, "e_channel", later.seen_photo, pass_of(later, world.tomorrow))
    assert (d["decision"], d["reason"]) == ("refer", "flight_not_in_window")
    d = await _decide(world, "e_channel", later.seen_photo, pass_of(later, world.today))
    assert (d["decision"], d["reason"]) == ("refer", "no_token")


async def test_another_face_on_a_pass_is_face_mismatch_and_audited(world) -> None:
    owner, other = world.passengers[0], world.passengers[1]
    d = await _decide(world, "e_channel", other.seen_photo, pass_of(owner, world.today))
    assert (d["decision"], d["reason"], d["method"]) == ("refer", "face_mismatch", "boarding_pass")
    pool = world.svc.services.db()
    event = await pool.fetchrow("SELECT token_id::text, method, reason, score FROM journey_events WHERE id = $1",
                                d["event_id"])
    assert (event["token_id"], event["method"], event["reason"]) == (owner.token_id, "boarding_pass", "face_mismatch")
    assert event["score"] < world.svc.services.settings.decisions.verify_threshold
    audited = await pool.fetchrow(
        "SELECT action, outcome, detail->>'reason' AS reason FROM audit_events WHERE token_id = $1::uuid"
        " AND detail->>'reason' = 'face_mismatch'", owner.token_id)
    assert audited is not None and (audited["action"], audited["outcome"]) == ("e_channel.identify", "refused")
    # The owner's journey has not moved.
    assert await pool.fetchval("SELECT state FROM tokens WHERE id = $1::uuid", owner.token_id) == "enrolled"


async def test_the_watchlist_applies_as_face_only(world) -> None:
    d = await _decide(world, "e_channel", world.subject.seen_photo, pass_of(world.subject, world.today))
    assert (d["decision"], d["reason"]) == ("refer", "see_officer")
    pool = world.svc.services.db()
    assert await pool.fetchval("SELECT on_hold FROM tokens WHERE id = $1::uuid", world.subject.token_id)
    assert await pool.fetchval("SELECT count(*) FROM alerts WHERE token_id = $1::uuid AND kind = 'watchlist'",
                               world.subject.token_id) == 1


async def test_the_pass_and_the_face_clear_and_board_then_the_journey_rules_refuse(world) -> None:
    p = world.passengers[1]
    boarding_pass = pass_of(p, world.today)
    d = await _decide(world, "e_channel", p.seen_photo, boarding_pass)
    assert (d["decision"], d["reason"], d["method"], d["token_id"]) == ("proceed", "matched", "boarding_pass",
                                                                        p.token_id)
    d = await _decide(world, "e_channel", p.seen_photo, boarding_pass)
    assert (d["decision"], d["reason"]) == ("refer", "already_cleared")
    d = await _decide(world, "gate23", p.seen_photo, boarding_pass)
    assert (d["decision"], d["reason"]) == ("refer", "gate_not_boarding")
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post(f"/v1/flights/{world.flights['today']['id']}/state", json={"state": "boarding"})
        assert r.status_code == 200, r.text
        d = await _decide(world, "gate23", p.seen_photo, boarding_pass)
        assert (d["decision"], d["reason"], d["method"]) == ("proceed", "matched", "boarding_pass")
        assert d["passenger"]["flight"] == "CX884"
        d = await _decide(world, "gate23", p.seen_photo, boarding_pass)
        assert (d["decision"], d["reason"]) == ("refer", "already_boarded")
        # The admin's decision log shows the method.
        r = await admin.get("/v1/audit/decisions", params={"flight_id": world.flights["today"]["id"]})
        assert r.status_code == 200, r.text
        mine = [e for e in r.json()["decisions"] if e["token_id"] == p.token_id]
        assert {(e["reason"], e["method"]) for e in mine} >= {("matched", "boarding_pass"),
                                                              ("already_boarded", "boarding_pass")}


async def test_without_the_header_the_answer_is_face_only(world) -> None:
    r = await _identify(world, "lounge", world.passengers[0].seen_photo, None)
    assert r.status_code == 200, r.text
    assert "method" not in r.json()
    method = await world.svc.services.db().fetchval("SELECT method FROM journey_events WHERE id = $1",
                                                    r.json()["event_id"])
    assert method == "face"
