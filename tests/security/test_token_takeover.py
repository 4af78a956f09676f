"""Token takeover by re-enrolment (issue 16), over real HTTP with real LFW faces and the real models.

The reproduced attack: a passenger enrols document K1000001 and clears the e-channel; anyone at any
kiosk re-enrols the same document on the same flight with their own face. Before the fix the kiosk
answered 200 template_updated:true and the attacker boarded under the passenger's name. Re-enrolment
is now bound to the enrolled face (1:1 at ``verify_threshold``), to the booking reference, and never
replaces the template of a token past check-in.

Each test has its own flight and its own LFW identities (so the window's duplicate-face check
never involves another test's passengers).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.testing import lfw_root
from tests.support import journey as j
from tests.support.world import World


@dataclass(kw_only=True)
class TakeoverWorld(World):
    faces: Any  # the engine, to pick photos the quality gates accept


@pytest.fixture(scope="module")
async def world(make_service, face_engine):
    async with make_service() as svc:
        keys = await j.make_devices(svc.services.db())
        async with svc.services.db().acquire() as conn:
            # "From any kiosk key": the attacker uses another kiosk than the passenger did.
            _, keys["kiosk2"] = await add_device(conn, name="test-kiosk-2", kind=DeviceKind.KIOSK, terminal="T2")
            _, keys["cx_ops"] = await add_device(conn, name="test-cx-ops", kind=DeviceKind.AIRLINE_OPS,
                                                 airline="CX")
            for gate in ("31", "33", "34"):
                _, keys[f"gate{gate}"] = await add_device(conn, name=f"test-gate-{gate}", kind=DeviceKind.GATE,
                                                          terminal="T1", gate=gate)
        yield TakeoverWorld(svc=svc, keys=keys, faces=face_engine)


async def usable(world: TakeoverWorld, name: str) -> list[Path]:
    """The identity's LFW photos whose capture passes the service's quality gates, in name order."""
    root = lfw_root(world.svc.services.settings.faces_dir)
    out = []
    for photo in sorted((root / name).glob("*.jpg")):
        a = await asyncio.to_thread(world.faces.analyse_sync, photo.read_bytes())
        if a.template is not None and not a.quality_failures:
            out.append(photo)
    assert len(out) >= 5, f"{name}: only {len(out)} usable photos"
    return out


def b64(photo: Path) -> str:
    return base64.b64encode(photo.read_bytes()).decode()


def body(photos: list[Path], flight: dict, document: str, *, surname: str, booking: str | None = None,
         seat: str | None = "42A", lounge: bool = False, chip: Path | None = None) -> dict[str, Any]:
    b = j.enrolment(photos[0], flight["id"], document_number=document, surname=surname, seat=seat, lounge=lounge)
    b["captures"] = [b64(p) for p in photos]
    if booking is not None:
        b["booking"]["booking_reference"] = booking
    if chip is not None:
        b["chip_photo"] = b64(chip)
    return b


async def enrol(world: TakeoverWorld, kiosk: str, payload: dict[str, Any]):
    async with world.svc.client(world.keys[kiosk]) as client:
        return await client.post("/v1/enrolments", json=payload)


async def identify(world: TakeoverWorld, device: str, photo: Path) -> dict[str, Any]:
    async with world.svc.client(world.keys[device]) as client:
        return await j.identify(client, photo)


async def proceeds(world: TakeoverWorld, device: str, photos: list[Path], token_id: str) -> Path:
    """The first of ``photos`` that proceeds at ``device`` as ``token_id`` (a news photo may be refused
    for its capture; a wrong-person proceed fails at once)."""
    for photo in photos:
        d = await identify(world, device, photo)
        if d["decision"] == "proceed":
            assert d["token_id"] == token_id, d
            return photo
    raise AssertionError(f"none of {[p.name for p in photos]} proceeded at {device}")


async def new_flight(world: TakeoverWorld, number: str, gate: str) -> dict:
    async with world.svc.client(world.keys["admin"]) as admin:
        return await j.create_flight(admin, number, gate)


async def set_state(world: TakeoverWorld, flight: dict, state: str) -> None:
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post(f"/v1/flights/{flight['id']}/state", json={"state": state})
    assert r.status_code == 200, r.text


async def snapshot(world: TakeoverWorld, token_id: str, flight: dict) -> dict[str, Any]:
    """Everything a re-enrolment could change: token, template, consents of the flight."""
    async with world.svc.services.db().acquire() as conn:
        token = await conn.fetchrow(
            "SELECT booking_reference, seat, lounge_eligible, consent_id, state, on_hold FROM tokens WHERE id = $1",
            uuid.UUID(token_id))
        template = await conn.fetchrow("SELECT model_id, sealed, updated_at FROM templates WHERE token_id = $1",
                                       uuid.UUID(token_id))
        consents = await conn.fetchval("SELECT count(*) FROM consents WHERE flight_id = $1", uuid.UUID(flight["id"]))
    return {"token": dict(token), "template": dict(template), "consents": consents}


async def refusals(world: TakeoverWorld, token_id: str, reason: str) -> int:
    async with world.svc.services.db().acquire() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'token.enrol' AND outcome = 'refused'"
            " AND token_id = $1 AND detail->>'reason' = $2", uuid.UUID(token_id), reason)


def assert_problem(r, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code


async def test_token_takeover_by_re_enrolling_another_face_is_refused(world: TakeoverWorld) -> None:
    """The reproduced attack: Arnold re-enrols BUSH's cleared token from another kiosk."""
    bush = await usable(world, "George_W_Bush")
    arnold = await usable(world, "Arnold_Schwarzenegger")
    flight = await new_flight(world, "801", "31")
    r = await enrol(world, "kiosk", body(bush[:3], flight, "K1000001", surname="BUSH", lounge=True))
    assert r.status_code == 201, r.text
    token = r.json()["token_id"]
    bush_probe = await proceeds(world, "e_channel", bush[3:], token)
    before = await snapshot(world, token, flight)
    assert before["token"]["state"] == "immigration_cleared"

    attack = await enrol(world, "kiosk2", body(arnold[:5], flight, "K1000001", surname="BUSH", seat="1A"))

    assert_problem(attack, 409, "face_mismatch")
    assert await snapshot(world, token, flight) == before, "token, template, booking and consent untouched"
    assert await refusals(world, token, "face_mismatch") == 1
    # The real passenger still matches at the lounge and the gate; Arnold does not.
    lounge_arnold = await identify(world, "lounge", arnold[-1])
    assert lounge_arnold["decision"] == "refer" and lounge_arnold.get("token_id") != token
    lounge_bush = await identify(world, "lounge", bush_probe)
    assert lounge_bush["decision"] == "proceed" and lounge_bush["token_id"] == token
    await set_state(world, flight, "boarding")
    gate_arnold = await identify(world, "gate31", arnold[-1])
    assert gate_arnold["decision"] == "refer" and gate_arnold.get("token_id") != token
    boarded = await identify(world, "gate31", bush_probe)
    assert boarded["decision"] == "proceed" and boarded["token_id"] == token
    assert boarded["passenger"]["name"] == "BUSH, Tai Man"


async def test_same_passenger_re_enrolment_still_updates_template_seat_and_lounge(world: TakeoverWorld) -> None:
    hanks = await usable(world, "Tom_Hanks")
    flight = await new_flight(world, "802", "32")
    r = await enrol(world, "kiosk", body(hanks[:1], flight, "K2000002", surname="HANKS"))
    assert r.status_code == 201, r.text
    token = r.json()["token_id"]
    before = await snapshot(world, token, flight)

    # The first photo again among the captures: the new template's quality is at least the old one.
    again = await enrol(world, "kiosk2", body(hanks[:3], flight, "K2000002", surname="HANKS", seat="12C",
                                              lounge=True))

    assert again.status_code == 200, again.text
    assert again.json()["token_id"] == token
    assert (again.json()["created"], again.json()["template_updated"]) == (False, True)
    after = await snapshot(world, token, flight)
    assert (after["token"]["seat"], after["token"]["lounge_eligible"]) == ("12C", True)
    assert after["template"]["sealed"] != before["template"]["sealed"]
    assert after["consents"] == before["consents"] + 1
    await proceeds(world, "e_channel", hanks[3:], token)


async def test_document_holder_with_chip_photo_exposes_a_fraudulent_first_enrolment(world: TakeoverWorld) -> None:
    """Blair enrolled with Putin's passport; Putin arrives with it: the chip photo (DG2) matches his
    live face and not the enrolled one, so the token is held for staff everywhere."""
    blair = await usable(world, "Tony_Blair")
    putin = await usable(world, "Vladimir_Putin")
    flight = await new_flight(world, "803", "33")
    r = await enrol(world, "kiosk", body(blair[:3], flight, "K3000003", surname="PUTIN"))
    assert r.status_code == 201, r.text
    token = r.json()["token_id"]
    before = await snapshot(world, token, flight)

    holder = await enrol(world, "kiosk2", body(putin[1:4], flight, "K3000003", surname="PUTIN", chip=putin[0]))

    assert_problem(holder, 409, "token_held")
    after = await snapshot(world, token, flight)
    assert after["token"]["on_hold"] is True
    assert after["template"] == before["template"] and after["consents"] == before["consents"]
    assert {k: v for k, v in after["token"].items() if k != "on_hold"} == \
        {k: v for k, v in before["token"].items() if k != "on_hold"}
    assert await refusals(world, token, "enrolled_face_not_document_holder") == 1
    async with world.svc.services.db().acquire() as conn:
        holds = await conn.fetchval("SELECT count(*) FROM audit_events WHERE action = 'token.hold'"
                                    " AND token_id = $1 AND detail->>'reason' = 'enrolment_fraud_suspected'",
                                    uuid.UUID(token))
    assert holds == 1
    # The airline sees the hold in its hold API (and may release it after checking).
    async with world.svc.client(world.keys["cx_ops"]) as ops:
        seen = (await ops.get(f"/v1/tokens/{token}/hold")).json()
    assert seen["staff_hold"] is True and seen["reason"] == "enrolment_fraud_suspected"
    # The face that enrolled is sent to an officer at every touchpoint.
    await set_state(world, flight, "boarding")
    for device in ("e_channel", "lounge", "gate33"):
        decisions = [await identify(world, device, p) for p in blair[3:6]]
        assert any(d["reason"] == "see_officer" for d in decisions), (device, decisions)
        assert all(d["decision"] == "refer" for d in decisions), (device, decisions)


async def test_kiosk_never_replaces_the_template_of_a_token_past_check_in(world: TakeoverWorld) -> None:
    federer = await usable(world, "Roger_Federer")
    flight = await new_flight(world, "804", "34")
    r = await enrol(world, "kiosk", body(federer[:1], flight, "K4000004", surname="FEDERER", lounge=True))
    assert r.status_code == 201, r.text
    token = r.json()["token_id"]
    probe = await proceeds(world, "e_channel", federer[1:], token)
    # Same face, first photo among the captures (quality never lower): before the fix, replaced.
    same_face = body(federer[:3], flight, "K4000004", surname="FEDERER", lounge=True)

    before = await snapshot(world, token, flight)
    cleared = await enrol(world, "kiosk2", same_face)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["template_updated"] is False
    assert (await snapshot(world, token, flight))["template"] == before["template"]

    assert (await identify(world, "lounge", probe))["decision"] == "proceed"
    in_lounge = await enrol(world, "kiosk2", same_face)
    assert in_lounge.status_code == 200 and in_lounge.json()["template_updated"] is False
    assert (await snapshot(world, token, flight))["template"] == before["template"]

    await set_state(world, flight, "boarding")
    assert (await identify(world, "gate34", probe))["decision"] == "proceed"
    boarded = await enrol(world, "kiosk2", same_face)
    assert_problem(boarded, 409, "token_ended")
    assert (await snapshot(world, token, flight))["template"] == before["template"]


async def test_re_enrolment_under_another_booking_reference_is_refused(world: TakeoverWorld) -> None:
    serena = await usable(world, "Serena_Williams")
    flight = await new_flight(world, "805", "35")
    r = await enrol(world, "kiosk", body(serena[:1], flight, "K5000005", surname="WILLIAMS", booking="ABC005"))
    assert r.status_code == 201, r.text
    token = r.json()["token_id"]
    before = await snapshot(world, token, flight)

    other = await enrol(world, "kiosk2", body(serena[:3], flight, "K5000005", surname="WILLIAMS",
                                              booking="ZZZ999", seat="1A", lounge=True))

    assert_problem(other, 409, "booking_mismatch")
    assert await snapshot(world, token, flight) == before
    assert await refusals(world, token, "booking_mismatch") == 1
