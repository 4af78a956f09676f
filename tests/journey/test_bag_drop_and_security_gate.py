"""Bag drop and e-Security Gate (issue 20, parts 3 and 4) over real HTTP, real PostgreSQL and the real
face models: a bag drop proceeds whatever the immigration state and records the bags; an e-Security
Gate admits the not yet cleared; a passenger who skipped the kiosk enrols late at an e-Security Gate,
with the kiosk's rules, the chip photo mandatory and the boarding pass in place of the booking: a pass
for another person, another date or an unknown flight is refused and writes nothing.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.testing import RunningService, identities
from tests.support import journey as j

pytestmark = pytest.mark.slow


@dataclass
class Person:
    photos: list[Path]
    """Three photos of one person, each pair a clear match: enrol (live), chip photo, probe."""
    token_id: str = ""


@dataclass
class World:
    svc: RunningService
    keys: dict[str, str]
    flight_a: dict
    """Scheduled (gate 23): passengers who have not cleared immigration yet."""
    flight_b: dict
    """Boarding later in the module (gate 24)."""
    flight_c: dict
    """Three days out: a pass for it is for another date."""
    people: list[Person]


def _clear(engine, photos: list[Path]) -> bool:
    """Good captures, one face each, every pair a strong match: every decision here is about rules."""
    analyses = [engine.analyse_sync(p.read_bytes()) for p in photos]
    if not all(a.quality_ok and not a.tailgating for a in analyses):
        return False
    vectors = [a.template.vector for a in analyses]
    return all(float(vectors[i] @ vectors[k]) >= 0.6 for i in range(3) for k in range(i + 1, 3))


@pytest.fixture(scope="module")
async def world(make_service, face_engine):
    settings = make_service.settings()
    people: list[Person] = []
    for _, photos in identities(settings.faces_dir, min_photos=3):
        if _clear(face_engine, photos[:3]):
            people.append(Person(photos[:3]))
        if len(people) == 5:
            break
    async with make_service(settings) as svc:
        keys = await j.make_devices(svc.services.db())
        async with svc.services.db().acquire() as conn:
            for name, kind in (("bag_drop", DeviceKind.BAG_DROP), ("security", DeviceKind.E_SECURITY_GATE)):
                _, keys[name] = await add_device(conn, name=f"test-{name}", kind=kind, terminal="T1")
        async with svc.client(keys["admin"]) as admin:
            flight_a = await j.create_flight(admin, "810", "23")
            flight_b = await j.create_flight(admin, "812", "24", in_minutes=70)
            flight_c = await j.create_flight(admin, "814", "25", in_minutes=3 * 24 * 60)
        async with svc.client(keys["kiosk"]) as kiosk:
            # people[0] on A, people[1] on B enrol at the kiosk; the others skip it (late enrolment).
            for i, flight in ((0, flight_a), (1, flight_b)):
                r = await kiosk.post("/v1/enrolments", json=j.enrolment(
                    people[i].photos[0], flight["id"], document_number=j.document_number(i)))
                assert r.status_code == 201, r.text
                people[i].token_id = r.json()["token_id"]
        yield World(svc, keys, flight_a, flight_b, flight_c, people)


async def _identify(svc: RunningService, key: str, photo: Path, query: str = ""):
    async with svc.client(key) as device:
        return await device.post(f"/v1/identify{query}", content=photo.read_bytes(),
                                 headers={"Content-Type": "image/jpeg"})


async def _event(world: World, event_id: int) -> dict:
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.get("/v1/audit/decisions", params={"flight_id": world.flight_a["id"], "limit": 500})
    assert r.status_code == 200, r.text
    [event] = [e for e in r.json()["decisions"] if e["id"] == event_id]
    return event


async def _state(world: World, token_id: str) -> str:
    return await world.svc.services.db().fetchval("SELECT state FROM tokens WHERE id = $1", uuid.UUID(token_id))


async def _token_count(world: World) -> int:
    return await world.svc.services.db().fetchval("SELECT count(*) FROM tokens")


async def _event_count(world: World) -> int:
    return await world.svc.services.db().fetchval("SELECT count(*) FROM journey_events")


async def test_bag_drop_proceeds_before_immigration_records_the_bags_and_moves_no_one(world: World) -> None:
    p = world.people[0]
    r = await _identify(world.svc, world.keys["bag_drop"], p.photos[2], "?bags=2")
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["decision"], d["reason"], d["token_id"]) == ("proceed", "matched", p.token_id)
    assert "passenger" not in d  # only a boarding gate's agent sees the passenger
    assert await _state(world, p.token_id) == "enrolled"  # no journey step
    event = await _event(world, d["event_id"])
    assert (event["touchpoint"], event["bags"], event["decision"]) == ("bag_drop", 2, "proceed")
    # Without a count, the decision is the same and the event says nothing of bags.
    r = await _identify(world.svc, world.keys["bag_drop"], p.photos[2])
    assert r.json()["decision"] == "proceed"
    assert (await _event(world, r.json()["event_id"]))["bags"] is None


@pytest.mark.parametrize(("device", "query", "code"), [
    ("gate23", "?bags=1", "bags_not_accepted"),
    ("e_channel", "?bags=0", "bags_not_accepted"),
    ("bag_drop", "?bags=10", "invalid_bags"),
    ("bag_drop", "?bags=-1", "invalid_bags"),
])
async def test_bags_only_from_a_bag_drop_and_only_0_to_9(world: World, device: str, query: str, code: str) -> None:
    before = await _event_count(world)
    r = await _identify(world.svc, world.keys[device], world.people[0].photos[2], query)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json") and r.json()["code"] == code
    assert await _event_count(world) == before and await _state(world, world.people[0].token_id) == "enrolled"


async def test_a_bag_count_that_is_not_a_number_is_a_clear_400(world: World) -> None:
    r = await _identify(world.svc, world.keys["bag_drop"], world.people[0].photos[2], "?bags=two")
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"


async def test_e_security_gate_admits_the_not_yet_cleared_and_then_the_e_channel_clears_them(world: World) -> None:
    p = world.people[0]
    r = await _identify(world.svc, world.keys["security"], p.photos[2])
    d = r.json()
    assert (d["decision"], d["reason"], d["token_id"]) == ("proceed", "matched", p.token_id)
    assert await _state(world, p.token_id) == "enrolled"
    assert (await _event(world, d["event_id"]))["touchpoint"] == "e_security_gate"
    r = await _identify(world.svc, world.keys["e_channel"], p.photos[2])
    assert (r.json()["decision"], r.json()["token_id"]) == ("proceed", p.token_id)
    # Past immigration they are airside already: the security gate refers them (the misuse search),
    # while a bag drop still takes their bags.
    r = await _identify(world.svc, world.keys["security"], p.photos[2])
    assert (r.json()["decision"], r.json()["reason"]) == ("refer", "already_cleared")
    r = await _identify(world.svc, world.keys["bag_drop"], p.photos[2], "?bags=1")
    assert (r.json()["decision"], r.json()["token_id"]) == ("proceed", p.token_id)


async def test_a_boarded_passenger_is_refused_at_the_bag_drop_and_the_security_gate(world: World) -> None:
    p = world.people[1]
    r = await _identify(world.svc, world.keys["e_channel"], p.photos[2])
    assert r.json()["decision"] == "proceed", r.text
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post(f"/v1/flights/{world.flight_b['id']}/state", json={"state": "boarding"})
        assert r.status_code == 200, r.text
    r = await _identify(world.svc, world.keys["gate24"], p.photos[2])
    assert r.json()["decision"] == "proceed", r.text
    for device in ("bag_drop", "security"):
        r = await _identify(world.svc, world.keys[device], p.photos[2], "?bags=1" if device == "bag_drop" else "")
        assert (r.json()["decision"], r.json()["reason"]) == ("refer", "already_boarded"), device
    assert await _state(world, p.token_id) == "boarded"


def _late(person: Person, flight: dict, n: int, *, chip: Path | None, consent: bool = True,
          booking: str | None = None, by_pass: bool = True, **pass_items) -> dict:
    """An enrolment body; ``by_pass``: as an e-Security Gate sends it, the boarding pass (of the
    document's holder, for ``flight``, unless ``pass_items`` say otherwise) in place of the booking."""
    body = j.enrolment(person.photos[0], flight["id"], document_number=j.document_number(n), consent=consent)
    if chip is not None:
        body["chip_photo"] = base64.b64encode(chip.read_bytes()).decode()
    if booking is not None:
        body["booking"]["booking_reference"] = booking
    if by_pass:
        items = {"surname": "Chan", "given": "Tai Man", "pnr": body["booking"]["booking_reference"],
                 "number": flight["number"], "day": j.departure_date(flight), **pass_items}
        body["boarding_pass"] = j.boarding_pass(**items)
        del body["booking"]
    return body


async def _written(world: World) -> tuple[int, int, int]:
    """What an enrolment writes: tokens, consents, templates."""
    row = await world.svc.services.db().fetchrow(
        "SELECT (SELECT count(*) FROM tokens), (SELECT count(*) FROM consents), (SELECT count(*) FROM templates)")
    return tuple(row.values())


async def _enrol(world: World, key: str, body: dict):
    async with world.svc.client(world.keys[key]) as device:
        return await device.post("/v1/enrolments", json=body)


async def test_late_enrolment_needs_consent_first_then_the_chip_photo(world: World) -> None:
    p = world.people[2]
    tokens = await _token_count(world)
    r = await _enrol(world, "security", _late(p, world.flight_a, 2, chip=None, consent=False))
    assert (r.status_code, r.json()["code"]) == (422, "consent_required")
    r = await _enrol(world, "security", _late(p, world.flight_a, 2, chip=None))
    assert (r.status_code, r.json()["code"]) == (422, "chip_photo_required")
    # Someone else's chip photo: the 1:1 check refuses it.
    r = await _enrol(world, "security", _late(p, world.flight_a, 2, chip=world.people[3].photos[1]))
    assert (r.status_code, r.json()["code"]) == (422, "chip_photo_mismatch")
    assert await _token_count(world) == tokens  # refused: nothing written
    # The kiosk still enrols without a chip photo (a staffed check-in saw the document), from the booking.
    r = await _enrol(world, "kiosk", _late(world.people[4], world.flight_a, 4, chip=None, by_pass=False))
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(("key", "shape", "code"), [
    ("security", "booking", "boarding_pass_required"),
    ("security", "both", "booking_not_accepted"),
    ("kiosk", "pass", "boarding_pass_not_accepted"),
    ("kiosk", "both", "boarding_pass_not_accepted"),
    ("kiosk", "neither", "booking_required"),
])
async def test_a_kiosk_sends_the_booking_and_an_e_security_gate_the_boarding_pass(
        world: World, key: str, shape: str, code: str) -> None:
    p = world.people[3]
    with_pass = _late(p, world.flight_a, 3, chip=p.photos[1])
    with_booking = _late(p, world.flight_a, 3, chip=p.photos[1], by_pass=False)
    body = {"booking": with_booking, "pass": with_pass, "both": {**with_booking, **with_pass},
            "neither": {k: v for k, v in with_pass.items() if k != "boarding_pass"}}[shape]
    before = await _written(world)
    r = await _enrol(world, key, body)
    assert (r.status_code, r.json()["code"]) == (422, code), r.text
    assert await _written(world) == before


@pytest.mark.parametrize(("items", "code"), [
    ({"surname": "Wong", "given": "Siu Ming"}, "boarding_pass_name_mismatch"),  # someone else's pass
    ({"number": "999"}, "boarding_pass_unknown_flight"),
    ({"flight": "c"}, "boarding_pass_other_date"),  # CX814, three days out: not a flight departing now
])
async def test_late_enrolment_refuses_a_pass_for_another_person_date_or_flight(
        world: World, items: dict, code: str) -> None:
    p = world.people[3]
    if items.get("flight") == "c":
        items = {"number": world.flight_c["number"], "day": j.departure_date(world.flight_c)}
    before = await _written(world)
    r = await _enrol(world, "security", _late(p, world.flight_a, 3, chip=p.photos[1], **items))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json") and r.json()["code"] == code
    assert await _written(world) == before


async def test_late_enrolment_refuses_a_malformed_pass_naming_the_item(world: World) -> None:
    p = world.people[3]
    body = _late(p, world.flight_a, 3, chip=p.photos[1])
    body["boarding_pass"] = body["boarding_pass"].replace("HKGLAX", "HK1LAX")
    before = await _written(world)
    r = await _enrol(world, "security", body)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "invalid_boarding_pass", "from_airport")
    assert await _written(world) == before


async def test_late_enrolment_with_the_chip_photo_makes_a_token_the_touchpoints_know(world: World) -> None:
    p = world.people[2]
    r = await _enrol(world, "security", _late(p, world.flight_a, 2, chip=p.photos[1]))
    assert r.status_code == 201, r.text
    p.token_id = r.json()["token_id"]
    assert (r.json()["state"], r.json()["flight_id"]) == ("enrolled", world.flight_a["id"])
    token = await world.svc.services.db().fetchrow(
        "SELECT enrolled_by, booking_reference, seat, lounge_eligible FROM tokens WHERE id = $1", uuid.UUID(p.token_id))
    # The booking is the pass's: its PNR and seat (042A printed, 42A kept); a pass says nothing of lounges.
    assert tuple(token.values()) == ("e_security_gate", "ABC002", "42A", False)
    async with world.svc.client(world.keys["admin"]) as admin:
        progress = (await admin.get(f"/v1/flights/{world.flight_a['id']}/progress")).json()
    assert progress["late_enrolled"] == 1 and progress["enrolled"] >= 2
    r = await _identify(world.svc, world.keys["security"], p.photos[2])
    assert (r.json()["decision"], r.json()["token_id"]) == ("proceed", p.token_id)
    # The re-enrolment rules hold here as at the kiosk: the same face and booking get the same token,
    # another booking reference is refused.
    r = await _enrol(world, "security", _late(p, world.flight_a, 2, chip=p.photos[1]))
    assert (r.status_code, r.json()["token_id"], r.json()["created"]) == (200, p.token_id, False)
    r = await _enrol(world, "security", _late(p, world.flight_a, 2, chip=p.photos[1], booking="ZZZ999"))
    assert (r.status_code, r.json()["code"]) == (409, "booking_mismatch")


async def test_late_enrolment_refuses_a_face_already_enrolled_under_another_document(world: World) -> None:
    p = world.people[0]  # enrolled at the kiosk with document 0
    r = await _enrol(world, "security", _late(p, world.flight_a, 40, chip=p.photos[1]))
    assert (r.status_code, r.json()["code"]) == (409, "face_already_enrolled")


async def test_other_touchpoints_cannot_enrol(world: World) -> None:
    for key in ("bag_drop", "e_channel", "gate23"):
        r = await _enrol(world, key, _late(world.people[3], world.flight_a, 3, chip=world.people[3].photos[1]))
        assert r.status_code == 403, (key, r.text)
