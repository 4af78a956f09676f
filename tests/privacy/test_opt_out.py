"""Opt-out with real faces: at a kiosk or with an agent, booking reference + travel document withdraw a
passenger at once: template deleted, token revoked, out of every gallery (this instance's before the
response, another instance's by its sync event), referred to the manual lane afterwards. A wrong
pair reveals nothing and changes nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.testing import identities
from tests.support import journey as j
from tests.support.world import Passenger, World

N = 8
DEADLINE_S = 10  # liveness only: how long the other instance may take before the test calls it stuck




def _opt_out_body(p: Passenger, **overrides) -> dict:
    body = {"booking_reference": p.booking_reference,
            "document": {"type": "P", "number": p.document, "issuing_state": "HKG"}}
    return {**body, **overrides}


@dataclass(kw_only=True)
class OptOutWorld(World):
    other: Any  # a second instance on the same database
    flight: dict


@pytest.fixture(scope="module")
async def world(make_service):
    settings = make_service.settings()
    async with AsyncExitStack() as stack:
        svc = await stack.enter_async_context(make_service(settings))
        other = await stack.enter_async_context(make_service(settings))
        await asyncio.wait_for(other.services.sync.connected.wait(), 10)
        keys = await j.make_devices(svc.services.db())
        async with svc.services.db().acquire() as conn:
            _, keys["agent_cx"] = await add_device(conn, name="agent-cx", kind=DeviceKind.AIRLINE_OPS, airline="CX")
            _, keys["agent_ka"] = await add_device(conn, name="agent-ka", kind=DeviceKind.AIRLINE_OPS, airline="KA")
        async with svc.client(keys["admin"]) as admin:
            flight = await j.create_flight(admin, "900", "23")
        passengers = []
        async with svc.client(keys["kiosk"]) as kiosk:
            for i, (_, photos) in enumerate(identities(settings.faces_dir, min_photos=2)[300:330]):
                doc = j.document_number(900 + i)
                r = await kiosk.post("/v1/enrolments", json=j.enrolment(photos[0], flight["id"], document_number=doc))
                if r.status_code == 201:
                    passengers.append(Passenger(enrol_photo=photos[0], probe=photos[1], document=doc,
                                                token_id=r.json()["token_id"],
                                                booking_reference="ABC" + doc[-3:]))  # as j.enrolment books
                if len(passengers) == N:
                    break
        assert len(passengers) == N
        yield OptOutWorld(svc=svc, other=other, keys=keys, flight=flight, passengers=passengers)


async def _token(world: OptOutWorld, p: Passenger):
    async with world.svc.services.db().acquire() as conn:
        return {
            "token": await conn.fetchrow("SELECT state, end_reason FROM tokens WHERE id = $1", uuid.UUID(p.token_id)),
            "template": await conn.fetchval("SELECT count(*) FROM templates WHERE token_id = $1",
                                            uuid.UUID(p.token_id)),
            "consents": await conn.fetch("SELECT withdrawn_at FROM consents c JOIN tokens t ON t.document_key ="
                                         " c.document_key AND t.flight_id = c.flight_id WHERE t.id = $1",
                                         uuid.UUID(p.token_id)),
        }


async def _gone_from_other_instance(world: OptOutWorld, token_id: uuid.UUID) -> None:
    started = time.monotonic()
    while world.other.services.galleries.contains(token_id):
        assert time.monotonic() - started < DEADLINE_S, "the other instance kept the token"
        await asyncio.sleep(0.01)


async def test_a_passenger_opts_out_at_a_kiosk_and_is_referred_to_the_manual_lane_afterwards(
        world: OptOutWorld) -> None:
    p = world.passengers[0]
    token = uuid.UUID(p.token_id)
    async with world.svc.client(world.keys["e_channel"]) as e_channel:
        before = await j.identify(e_channel, p.seen_photo)
    assert world.other.services.galleries.contains(token)
    async with world.svc.client(world.keys["kiosk"]) as kiosk:
        r = await kiosk.post("/v1/opt-outs", json=_opt_out_body(p))
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "withdrawn", "tokens_revoked": 1, "templates_deleted": 1,
                        "next_step": "manual_lane"}
    # At once, on this instance: nothing left to search by the time the kiosk shows "done".
    assert not world.svc.services.galleries.contains(token)
    await _gone_from_other_instance(world, token)
    state = await _token(world, p)
    assert tuple(state["token"]) == ("revoked", "opted_out")
    assert state["template"] == 0
    assert state["consents"] and all(c["withdrawn_at"] is not None for c in state["consents"]), \
        "the consent record stays, marked withdrawn"
    for instance in (world.svc, world.other):
        for kind in ("e_channel", "lounge"):
            async with instance.client(world.keys[kind]) as device:
                d = await j.identify(device, p.seen_photo)
            assert d["decision"] == "refer", (kind, d)
            assert d.get("token_id") is None
    if before["decision"] == "proceed":
        assert before["token_id"] == p.token_id
    audit = await world.svc.services.db().fetch(
        "SELECT actor, outcome, detail->>'channel' AS channel FROM audit_events WHERE action = 'token.opt_out'"
        " AND token_id = $1", token)
    assert [(a["outcome"], a["channel"]) for a in audit] == [("ok", "kiosk")]


async def test_opting_out_twice_changes_nothing_and_re_enrolment_is_refused(world: OptOutWorld) -> None:
    p = world.passengers[0]
    async with world.svc.client(world.keys["kiosk"]) as kiosk:
        again = await kiosk.post("/v1/opt-outs", json=_opt_out_body(p))
        re_enrol = await kiosk.post("/v1/enrolments", json=j.enrolment(p.photo, world.flight["id"],
                                                                       document_number=p.document))
    assert again.status_code == 200
    assert (again.json()["tokens_revoked"], again.json()["templates_deleted"]) == (0, 0)
    assert re_enrol.status_code == 409 and re_enrol.json()["code"] == "token_ended"
    assert (await _token(world, p))["template"] == 0


async def test_an_agent_opts_a_passenger_out_for_their_own_airline_only(world: OptOutWorld) -> None:
    p = world.passengers[1]
    body = _opt_out_body(p, flight_id=world.flight["id"])
    async with world.svc.client(world.keys["agent_ka"]) as other_airline:
        r = await other_airline.post("/v1/opt-outs", json=body)
    assert r.status_code == 404 and r.json()["code"] == "passenger_not_found"
    assert (await _token(world, p))["template"] == 1
    async with world.svc.client(world.keys["agent_cx"]) as agent:
        r = await agent.post("/v1/opt-outs", json=body)
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 1
    assert not world.svc.services.galleries.contains(uuid.UUID(p.token_id))
    channel = await world.svc.services.db().fetchval(
        "SELECT detail->>'channel' FROM audit_events WHERE action = 'token.opt_out' AND outcome = 'ok'"
        " AND token_id = $1", uuid.UUID(p.token_id))
    assert channel == "agent"


async def test_a_wrong_booking_or_document_reveals_nothing_and_changes_nothing(world: OptOutWorld) -> None:
    p, other = world.passengers[2], world.passengers[3]
    wrong_pairs = [
        _opt_out_body(p, booking_reference=other.booking_reference),  # someone else's booking, this document
        _opt_out_body(other, booking_reference=p.booking_reference),  # this booking, someone else's document
        _opt_out_body(p, document={"type": "P", "number": "X0000000", "issuing_state": "HKG"}),
        _opt_out_body(p, document={"type": "P", "number": p.document, "issuing_state": "GBR"}),
        _opt_out_body(p, flight_id=str(uuid.uuid4())),
    ]
    async with world.svc.client(world.keys["kiosk"]) as kiosk:
        responses = [await kiosk.post("/v1/opt-outs", json=body) for body in wrong_pairs]
    bodies = [{k: v for k, v in r.json().items() if k not in ("request_id",)} for r in responses]
    assert {r.status_code for r in responses} == {404}
    assert all(b == bodies[0] for b in bodies), "every miss looks the same"
    assert bodies[0]["code"] == "passenger_not_found"
    for q in (p, other):
        assert (await _token(world, q))["template"] == 1
        assert world.svc.services.galleries.contains(uuid.UUID(q.token_id))
    refused = await world.svc.services.db().fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'token.opt_out' AND outcome = 'refused'")
    assert refused >= len(wrong_pairs)


@pytest.mark.parametrize("body", [
    {},
    {"booking_reference": "abc123", "document": {"type": "P", "number": "K1", "issuing_state": "HKG"}},
    {"booking_reference": "ABC123", "document": {"type": "P", "number": "K1"}},
    {"booking_reference": "ABC123", "document": {"type": "P", "number": "K1", "issuing_state": "HKG"}, "x": 1},
    {"booking_reference": "ABC123", "document": {"type": "P", "number": "K1", "issuing_state": "HKG"},
     "flight_id": "not-a-uuid"},
])
async def test_a_malformed_opt_out_is_a_400_and_changes_nothing(world: OptOutWorld, body: dict) -> None:
    async with world.svc.client(world.keys["kiosk"]) as kiosk:
        r = await kiosk.post("/v1/opt-outs", json=body)
    assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text
    assert (await _token(world, world.passengers[4]))["template"] == 1


async def test_touchpoints_cannot_opt_anyone_out(world: OptOutWorld) -> None:
    p = world.passengers[5]
    for kind in ("e_channel", "lounge", "gate23"):
        async with world.svc.client(world.keys[kind]) as device:
            r = await device.post("/v1/opt-outs", json=_opt_out_body(p))
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert (await _token(world, p))["template"] == 1
