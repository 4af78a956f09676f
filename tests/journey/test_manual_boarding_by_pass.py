"""Manual boarding by boarding pass, and the DCS hearing of it (issue 20, parts 5 and 6), over real HTTP,
real PostgreSQL, the real face models and a real airline receiver on a loopback port.

A gate agent names the passenger by their pass instead of a token id: the pass names the token on the
flight boarding at this gate, and the gate's rules and holds apply as by token id. A pass naming no
token, another day's flight or a held passenger boards no one and queues nothing. A manual boarding
queues one ``passenger.boarded`` event (``method: manual``, the agent's reason code) in its own
transaction, delivered signed to the airline; it writes no journey event (the gate's face statistics).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from flighttoken.dcs import signing
from flighttoken.testing import identities
from tests.dcs.receiver import Receiver, running_receiver
from tests.support import journey as j
from tests.support.concurrency import within
from tests.support.world import Passenger, World
from tests.watchlist.helpers import extra_keys, pick_subject, subject_body
from touchpoints.clients import GateClient
from touchpoints.transport import ApiError

pytestmark = pytest.mark.slow
DELIVERY_S = 20.0  # generous: a loaded 2-core machine; the deliverer polls every 0.1 s here
ACTION = "token.boarded_manually"


@dataclass(kw_only=True)
class PassWorld(World):
    dcs: Receiver
    secret: str
    today: date
    tomorrow: date
    alpha: Passenger
    """Today's CX884 (gate 23), cleared immigration."""
    bravo: Passenger
    """Tomorrow's CX884 (gate 24), enrolled only."""
    wanted: Passenger
    """Today's CX884, on the watchlist: held for an officer by the hit at the e-channel."""


def _clear(engine, photos: list[Path]) -> bool:
    a, b = (engine.analyse_sync(p.read_bytes()) for p in photos[:2])
    if not (a.quality_ok and b.quality_ok) or a.tailgating or b.tailgating:
        return False
    return float(a.template.vector @ b.template.vector) >= 0.6


def pass_of(p: Passenger, day: date, **items) -> str:
    return j.boarding_pass(p.name, "Tai Man", items.pop("pnr", p.booking_reference), items.pop("number", "884"),
                           day, **items)


@pytest.fixture(scope="module")
async def world(make_service, face_engine):
    settings = make_service.settings(secondary_referral_share=0.0, dcs_delivery_interval_s=0.1,
                                     dcs_backoff_base_s=0.05, dcs_backoff_cap_s=0.2)
    subject = pick_subject(face_engine, settings.faces_dir, settings.watchlist.watchlist_threshold,
                           settings.decisions.e_channel_threshold)
    async with running_receiver() as dcs, make_service(settings, authority=True) as svc:
        keys = {**await j.make_devices(svc.services.db()), **await extra_keys(svc.services.db())}
        async with svc.client(keys["admin"]) as admin:
            r = await admin.put("/v1/airlines/CX/webhook", json={"url": dcs.url})
            assert r.status_code == 200, r.text
            secret = r.json()["secret"]
            today_flight = await j.create_flight(admin, "884", "23")
            tomorrow_flight = await j.create_flight(admin, "884", "24", in_minutes=25 * 60)
        async with svc.authority_client(keys["authority"]) as authority:
            r = await authority.post("/v1/watchlist/subjects", json=subject_body([subject.watchlist_photo]))
            assert r.status_code == 201, r.text
        chosen = []
        for name, photos in identities(settings.faces_dir, min_photos=2):
            if name != subject.name and _clear(face_engine, photos):
                chosen.append(photos)
            if len(chosen) == 2:
                break
        # BCBP names are letters only: so are these surnames.
        alpha = Passenger(name="Alpha", enrol_photo=chosen[0][0], probe=chosen[0][1], document=j.document_number(0),
                          flight=today_flight["id"])
        bravo = Passenger(name="Bravo", enrol_photo=chosen[1][0], probe=chosen[1][1], document=j.document_number(1),
                          flight=tomorrow_flight["id"])
        wanted = Passenger(name="Lee", enrol_photo=subject.enrol_photo, probe=subject.probe_photo,
                           document=j.document_number(2), flight=today_flight["id"])
        async with svc.client(keys["kiosk"]) as kiosk:
            for p in (alpha, bravo, wanted):
                body = j.enrolment(p.photo, p.flight, document_number=p.document, surname=p.name)
                r = await kiosk.post("/v1/enrolments", json=body)
                assert r.status_code == 201, r.text
                p.token_id, p.booking_reference = r.json()["token_id"], body["booking"]["booking_reference"]
        today, tomorrow = j.departure_date(today_flight), j.departure_date(tomorrow_flight)
        async with svc.client(keys["e_channel"]) as e_channel:
            for p, reason in ((alpha, "matched"), (wanted, "see_officer")):
                r = await e_channel.post("/v1/identify", content=p.seen_photo.read_bytes(),
                                         headers={"Content-Type": "image/jpeg", "Boarding-Pass": pass_of(p, today)})
                assert r.status_code == 200 and r.json()["reason"] == reason, r.text
        async with svc.client(keys["admin"]) as admin:
            for flight in (today_flight, tomorrow_flight):
                r = await admin.post(f"/v1/flights/{flight['id']}/boarding")
                assert r.status_code == 200, r.text
        yield PassWorld(svc=svc, keys=keys, flights={"today": today_flight, "tomorrow": tomorrow_flight}, dcs=dcs,
                        secret=secret, today=today, tomorrow=tomorrow, alpha=alpha, bravo=bravo, wanted=wanted)


def _body(boarding_pass: str, reason_code: str = "face_not_recognised") -> dict:
    return {"agent_id": "CX-4411", "reason_code": reason_code, "boarding_pass": boarding_pass}


async def _board(world: PassWorld, key: str, body: dict):
    async with world.svc.client(world.keys[key]) as gate:
        return await gate.post("/v1/manual-boardings", json=body)


async def _written(world: PassWorld) -> dict:
    """What a manual boarding could write: token states, boardings, DCS events, journey events."""
    pool = world.svc.services.db()
    states = {r["id"]: r["state"] for r in await pool.fetch("SELECT id::text, state FROM tokens")}
    counts = await pool.fetchrow("SELECT (SELECT count(*) FROM manual_boardings) AS boardings,"
                                 " (SELECT count(*) FROM dcs_outbox WHERE kind = 'passenger.boarded') AS dcs,"
                                 " (SELECT count(*) FROM journey_events) AS events")
    return {"states": states, **dict(counts)}


async def _refusals(world: PassWorld, token_id: str | None) -> list[dict]:
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.get("/v1/audit", params={"action": ACTION})
    assert r.status_code == 200, r.text
    return [e for e in r.json()["events"] if e["token_id"] == token_id and e["outcome"] == "refused"]


async def test_a_held_passengers_pass_is_refused_like_their_token(world: PassWorld) -> None:
    before = await _written(world)
    r = await _board(world, "gate23", _body(pass_of(world.wanted, world.today)))
    assert (r.status_code, r.json()["code"]) == (409, "see_officer"), r.text
    assert await _written(world) == before
    assert (await _refusals(world, world.wanted.token_id))[-1]["detail"]["refusal"] == "see_officer"


async def test_a_pass_for_another_date_or_naming_no_one_boards_no_one(world: PassWorld) -> None:
    alpha, bravo = world.alpha, world.bravo
    before = await _written(world)
    # Tomorrow's CX884 holds no token under Alpha's booking; today's none under Bravo's; nor another name.
    for boarding_pass in (pass_of(alpha, world.tomorrow), pass_of(bravo, world.today),
                          j.boarding_pass("Other", "Person", alpha.booking_reference, "884", world.today),
                          pass_of(alpha, world.today, number="886")):
        r = await _board(world, "gate23", _body(boarding_pass))
        assert (r.status_code, r.json()["code"]) == (404, "no_token"), (boarding_pass, r.text)
    # Bravo's own pass names Bravo's token, on tomorrow's flight: refused with the gate's words.
    r = await _board(world, "gate23", _body(pass_of(bravo, world.tomorrow)))
    assert (r.status_code, r.json()["code"]) == (409, "wrong_flight"), r.text
    assert (await _refusals(world, bravo.token_id))[-1]["detail"]["refusal"] == "wrong_flight"
    assert (await _refusals(world, None))[-1]["detail"]["refusal"] == "no_token"
    assert await _written(world) == before


async def test_a_malformed_pass_is_422_naming_the_item_and_changes_nothing(world: PassWorld) -> None:
    before = await _written(world)
    broken = pass_of(world.alpha, world.today).replace("HKGLAX", "HK1LAX")
    r = await _board(world, "gate23", _body(broken))
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert (r.json()["code"], r.json()["field"]) == ("invalid_boarding_pass", "from_airport")
    assert await _written(world) == before


async def test_the_pass_boards_its_passenger_by_hand_and_the_dcs_hears_it_once(world: PassWorld) -> None:
    alpha = world.alpha
    before = await _written(world)
    async with GateClient(world.svc.base_url, world.keys["gate23"]) as gate:
        done = await gate.board_manually(None, "CX-4411", "device_fault", boarding_pass=pass_of(alpha, world.today))
        assert (str(done.token_id), done.reason_code, done.passenger and done.passenger.flight) == \
            (alpha.token_id, "device_fault", "CX884")
        with pytest.raises(ApiError) as again:
            await gate.board_manually(None, "CX-4411", "device_fault", boarding_pass=pass_of(alpha, world.today))
    assert (again.value.status, again.value.code) == (409, "already_boarded")
    after = await _written(world)
    assert after["states"][alpha.token_id] == "boarded"
    # One boarding, one DCS event; no journey event (those are the gate's face decisions).
    assert (after["boardings"], after["dcs"], after["events"]) == (before["boardings"] + 1, before["dcs"] + 1,
                                                                   before["events"])
    await within(DELIVERY_S, lambda: world.dcs.of_type("passenger.boarded"))
    (delivery,) = world.dcs.accepted().values()
    assert signing.verify(world.secret, delivery.body, delivery.headers[signing.SIGNATURE_HEADER.lower()])
    data = delivery.event["data"]
    assert (data["token_id"], data["method"], data["reason_code"], data["agent_id"], data["gate"], data["flight"]) == \
        (alpha.token_id, "manual", "device_fault", "CX-4411", "23", "CX884")
    assert (data["booking_reference"], data["seat"], data["flight_id"]) == \
        (alpha.booking_reference, "42A", world.flights["today"]["id"])
    assert uuid.UUID(delivery.event["id"]) and b"K0000000" not in delivery.body
