"""Staff processing at the gate (issue 20, part 5), over real HTTP, real PostgreSQL and the real face
models, on two instances of one database.

A gate agent boards a referred passenger by hand with the gate's key: it is audited, counted in the
flight's progress as a manual boarding, and every instance drops the passenger from its gate gallery.
The gate's journey rules still apply and a hold is never bypassed (a watchlist hit's, an airline's):
each refusal is a 409 with the gate's refer reason as its code and changes nothing; bad input and
other keys are refused before anything is read.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from flighttoken.testing import RunningService, identities
from flighttoken.vocabulary import DeviceKind
from tests.support import journey as j
from tests.support.concurrency import within
from tests.watchlist.helpers import Subject, extra_keys, pick_subject, subject_body
from touchpoints.clients import GateClient
from touchpoints.transport import ApiError

pytestmark = pytest.mark.slow

PROPAGATION_S = 1.0
ACTION = "token.boarded_manually"


@dataclass
class Gate:
    a: RunningService
    b: RunningService
    keys: dict[str, str]
    international: dict[str, Any]
    """Boarding at gate 23."""
    domestic: dict[str, Any]
    """Boarding at gate 24."""
    cleared: str
    """International, cleared immigration at the e-channel by face."""
    cleared_subject: Subject
    wanted: str
    """International, on the watchlist: held by the hit at the e-channel."""
    plain: list[str]
    """International, enrolled only: [not cleared, airline hold, revoked]."""
    domestic_passenger: str


async def _enrol(kiosk, photo, flight_id: str, i: int) -> str | None:
    r = await kiosk.post("/v1/enrolments", json=j.enrolment(photo, flight_id, document_number=j.document_number(i)))
    return r.json()["token_id"] if r.status_code == 201 else None


@pytest.fixture(scope="module")
async def world(make_service, face_engine):
    settings = make_service.settings()
    thresholds = settings.watchlist.watchlist_threshold, settings.decisions.e_channel_threshold
    wanted = pick_subject(face_engine, settings.faces_dir, *thresholds)
    cleared = pick_subject(face_engine, settings.faces_dir, *thresholds, skip=1)
    async with make_service(settings, authority=True) as a, make_service(settings) as b:
        assert b.services.sync is not None
        await asyncio.wait_for(b.services.sync.connected.wait(), 5)
        pool = a.services.db()
        keys = {**await j.make_devices(pool), **await extra_keys(pool)}
        async with a.client(keys["admin"]) as admin:
            international = await j.create_flight(admin, "880", "23")
            domestic = await j.create_flight(admin, "882", "24", international=False)
        async with a.client(keys["kiosk"]) as kiosk:
            enrolled = [await _enrol(kiosk, s.enrol_photo, international["id"], i)
                        for i, s in enumerate((wanted, cleared))]
            ids = [t for t in enrolled if t is not None]
            assert len(ids) == len(enrolled), enrolled
            others: list[str] = []
            for name, photos in identities(settings.faces_dir, min_photos=2):
                if name in (wanted.name, cleared.name):
                    continue
                flight = international if len(others) < 3 else domestic
                token = await _enrol(kiosk, photos[0], flight["id"], 10 + len(others))
                if token:
                    others.append(token)
                if len(others) == 4:
                    break
        async with a.authority_client(keys["authority"]) as authority:
            r = await authority.post("/v1/watchlist/subjects", json=subject_body([wanted.watchlist_photo]))
            assert r.status_code == 201, r.text
        async with a.client(keys["e_channel"]) as e_channel:
            assert (await j.identify(e_channel, wanted.probe_photo))["reason"] == "see_officer"
            d = await j.identify(e_channel, cleared.probe_photo)
            assert (d["decision"], d["token_id"]) == ("proceed", ids[1]), d
        async with a.client(keys["ops_cx"]) as airline:
            r = await airline.put(f"/v1/tokens/{others[1]}/hold", json={"reason": "document_check"})
            assert r.status_code == 200, r.text
        async with a.client(keys["admin"]) as admin:
            r = await admin.post(f"/v1/tokens/{others[2]}/revoke", json={"reason": "offloaded"})
            assert r.status_code == 200, r.text
            for flight in (international, domestic):
                r = await admin.post(f"/v1/flights/{flight['id']}/boarding")
                assert r.status_code == 200, r.text
        for token in (ids[1], others[3]):
            await within(5, lambda t=token: b.services.galleries.contains(uuid.UUID(t)))
        yield Gate(a, b, keys, international, domestic, ids[1], cleared, ids[0], others[:3], others[3])


def _body(token_id: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"agent_id": "CX-4411", "reason_code": "face_not_recognised", **extra}
    if token_id is not None:
        body["token_id"] = token_id
    return body


async def _board(svc: RunningService, key: str, body: dict[str, Any], **headers: str):
    async with svc.client(key) as gate:
        return await gate.post("/v1/manual-boardings", json=body, headers=headers)


async def _state(world: Gate, token_id: str) -> dict[str, Any]:
    """What a manual boarding could change: the token, its flight's progress, the boardings recorded."""
    async with world.a.client(world.keys["admin"]) as admin:
        token = (await admin.get(f"/v1/tokens/{token_id}")).json()
        progress = (await admin.get(f"/v1/flights/{token['flight_id']}/progress")).json()
    rows = await world.a.services.db().fetchval("SELECT count(*) FROM manual_boardings")
    return {"state": token["state"], "progress": progress, "manual_boardings": rows}


async def _audited(world: Gate, token_id: str) -> list[dict[str, Any]]:
    async with world.a.client(world.keys["admin"]) as admin:
        r = await admin.get("/v1/audit", params={"action": ACTION})
    assert r.status_code == 200, r.text
    return [e for e in r.json()["events"] if e["token_id"] == token_id]


async def _refused(world: Gate, key: str, token_id: str, code: str) -> None:
    before = await _state(world, token_id)
    r = await _board(world.a, world.keys[key], _body(token_id))
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code
    assert await _state(world, token_id) == before
    audited = await _audited(world, token_id)
    assert audited and audited[-1]["outcome"] == "refused" and audited[-1]["detail"]["refusal"] == code


async def test_a_held_passenger_is_refused_like_the_gate_refers_them(world: Gate) -> None:
    # Held by the watchlist hit at the e-channel (an authority hold) and by the airline: the gate's own words.
    for token_id in (world.wanted, world.plain[1]):
        await _refused(world, "gate23", token_id, "see_officer")


async def test_the_gates_journey_rules_apply(world: Gate) -> None:
    await _refused(world, "gate23", world.plain[0], "immigration_not_cleared")
    await _refused(world, "gate23", world.plain[2], "token_ended")
    # Gate 23's key for a passenger whose flight boards at gate 24, and the other way round.
    await _refused(world, "gate23", world.domestic_passenger, "wrong_flight")
    await _refused(world, "gate24", world.cleared, "wrong_flight")


async def test_bad_input_and_other_keys_are_refused_and_change_nothing(world: Gate) -> None:
    token_id = world.plain[0]
    before = await _state(world, token_id)
    audited = await _audited(world, token_id)
    bad = [_body(token_id, reason_code="felt_like_it"), _body(token_id, agent_id=""),
           _body(token_id, agent_id="x" * 41), _body(token_id, agent_id="CX 4411\n"),
           _body("not-a-uuid"), _body(token_id, boarding_pass="M1" * 1001), {"token_id": token_id}]
    for body in bad:
        r = await _board(world.a, world.keys["gate23"], body)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_request"), (body, r.text)
    r = await _board(world.a, world.keys["gate23"], _body(None))
    assert (r.status_code, r.json()["code"]) == (422, "passenger_required"), r.text
    r = await _board(world.a, world.keys["gate23"], _body(token_id, boarding_pass="M1CHAN/TAIMAN"))
    assert (r.status_code, r.json()["code"]) == (422, "passenger_named_twice"), r.text
    r = await _board(world.a, world.keys["gate23"], _body(None, boarding_pass="M1CHAN/TAIMAN"))
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "invalid_boarding_pass", "passenger_name")
    r = await _board(world.a, world.keys["gate23"], _body(str(uuid.uuid4())))
    assert (r.status_code, r.json()["code"]) == (404, "token_not_found"), r.text
    for key in ("kiosk", "e_channel", "lounge", "admin", "ops_cx"):
        r = await _board(world.a, world.keys[key], _body(token_id))
        assert (r.status_code, r.json()["code"]) == (403, "forbidden"), (key, r.text)
    assert await _state(world, token_id) == before
    assert await _audited(world, token_id) == audited


async def test_a_cleared_passenger_is_boarded_by_hand_audited_counted_and_leaves_every_gate_gallery(
        world: Gate) -> None:
    token = uuid.UUID(world.cleared)
    for svc in (world.a, world.b):
        assert DeviceKind.GATE in svc.services.galleries.purposes(token)
    before = (await _state(world, world.cleared))["progress"]
    r = await _board(world.a, world.keys["gate23"], _body(world.cleared), **{"Idempotency-Key": "board-1"})
    assert r.status_code == 201, r.text
    done = r.json()
    assert (done["token_id"], done["flight_id"], done["agent_id"], done["reason_code"]) == \
        (world.cleared, world.international["id"], "CX-4411", "face_not_recognised")
    assert done["passenger"]["flight"] == "CX880" and done["passenger"]["seat"] == "42A"
    after = await _state(world, world.cleared)
    assert after["state"] == "boarded"
    progress = after["progress"]
    assert progress["boarded"] == before["boarded"] + 1
    assert (progress["boarded_manual"], progress["boarded_biometric"]) == (before["boarded_manual"] + 1,
                                                                           before["boarded_biometric"])
    assert progress["boarded_manual_by_reason"] == {"face_not_recognised": 1}
    audited = await _audited(world, world.cleared)
    assert audited[-1]["outcome"] == "ok" and audited[-1]["device"]["gate"] == "23"
    assert audited[-1]["detail"]["agent_id"] == "CX-4411"
    assert audited[-1]["detail"]["manual_boarding_id"] == done["id"]
    # Out of the gate's gallery here at once, and on the other instance from the sync event.
    assert DeviceKind.GATE not in world.a.services.galleries.purposes(token)
    await within(PROPAGATION_S, lambda: DeviceKind.GATE not in world.b.services.galleries.purposes(token))
    async with world.b.client(world.keys["gate23"]) as gate:
        d = await j.identify(gate, world.cleared_subject.probe_photo)
    assert d["decision"] == "refer", d
    # A retry after a lost answer gets the first answer; a new attempt meets already_boarded.
    again = await _board(world.a, world.keys["gate23"], _body(world.cleared), **{"Idempotency-Key": "board-1"})
    assert (again.status_code, again.json()) == (201, done)
    await _refused(world, "gate23", world.cleared, "already_boarded")


async def test_a_domestic_passenger_needs_no_immigration_clearance_through_the_typed_client(world: Gate) -> None:
    async with GateClient(world.a.base_url, world.keys["gate24"]) as gate:
        done = await gate.board_manually(uuid.UUID(world.domestic_passenger), "ka.chan", "device_fault")
        assert (str(done.token_id), done.reason_code, done.passenger and done.passenger.flight) == \
            (world.domestic_passenger, "device_fault", "CX882")
        with pytest.raises(ApiError) as refused:
            await gate.board_manually(uuid.UUID(world.domestic_passenger), "ka.chan", "device_fault")
    assert (refused.value.status, refused.value.code) == (409, "already_boarded")
    async with world.a.client(world.keys["ops_cx"]) as airline:
        progress = (await airline.get(f"/v1/flights/{world.domestic['id']}/progress")).json()
    assert (progress["boarded"], progress["boarded_manual"], progress["boarded_manual_by_reason"]) == \
        (1, 1, {"device_fault": 1})
