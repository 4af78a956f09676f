"""A hold or revoke landing between a lounge's read of the token and its decision write (issue 16).

Real HTTP, real PostgreSQL, real face models. The interleaving is forced: the token read in
``identify.conclude`` is wrapped so that, right after it returns, the hold (or revoke) is placed
over HTTP and committed before the lounge's write runs. No sleep.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from flighttoken.db.queries import tokens as token_q
from flighttoken.testing import identities
from tests.support import journey as j
from tests.support.world import Passenger, World


@pytest.fixture(scope="module")
async def world(make_service, face_engine):
    settings = make_service.settings()
    async with make_service(settings) as svc:
        keys = await j.make_devices(svc.services.db())
        async with svc.client(keys["admin"]) as admin:
            flight = await j.create_flight(admin, "884", "23")
        passengers = []
        async with svc.client(keys["kiosk"]) as kiosk, svc.client(keys["e_channel"]) as e_channel:
            for _, photos in identities(settings.faces_dir, min_photos=6):
                chosen = await _clear_photos(face_engine, photos)
                if chosen is None:
                    continue
                enrol_photo, e_channel_photo, lounge_photo = chosen
                r = await kiosk.post("/v1/enrolments", json=j.enrolment(
                    enrol_photo, flight["id"], document_number=j.document_number(len(passengers))))
                assert r.status_code == 201, r.text
                # Cleared immigration: the lounge is the next step of their journey.
                d = await j.identify(e_channel, e_channel_photo)
                assert (d["decision"], d["reason"]) == ("proceed", "matched"), d
                passengers.append(Passenger(token_id=r.json()["token_id"], probe=lounge_photo))
                if len(passengers) == 3:
                    break
        yield World(svc=svc, keys=keys, passengers=passengers)


async def _clear_photos(engine, photos: list[Path]) -> tuple[Path, Path, Path] | None:
    """Three photos of one person that pass the quality gates and clearly match the first."""
    good = []
    for photo in photos[:6]:
        analysis = await engine.analyse(photo.read_bytes())
        if analysis.template is not None and not analysis.quality_failures:
            good.append((photo, analysis.template.vector))
    if len(good) < 3:
        return None
    (first, vector), *rest = good
    close = [photo for photo, other in rest if float(np.dot(vector, other)) >= 0.5]
    return (first, close[0], close[1]) if len(close) >= 2 else None


def _land_after_read(monkeypatch, world: World, token_id: str, method: str, path: str, body: dict) -> list:
    """After the lounge reads ``token_id``, an airline agent's hold/revoke lands before the write."""
    real, landed = token_q.with_flight, []

    async def with_flight(conn, wanted):
        row = await real(conn, wanted)
        if wanted == uuid.UUID(token_id) and not landed:
            async with world.svc.client(world.keys["admin"]) as admin:
                r = await admin.request(method, path, json=body)
            assert r.status_code == 200, r.text
            assert row is not None
            landed.append(row["state"])
        return row

    monkeypatch.setattr(token_q, "with_flight", with_flight)
    return landed


async def _lounge_state(world: World, token_id: str):
    return await world.svc.services.db().fetchrow("SELECT state, on_hold, last_lounge_at FROM tokens WHERE id = $1",
                                                  uuid.UUID(token_id))


async def _lounge_event(world: World, event_id: int):
    return await world.svc.services.db().fetchrow("SELECT decision, reason, token_id FROM journey_events"
                                                  " WHERE id = $1", event_id)


async def test_a_hold_landing_between_read_and_write_does_not_admit_to_the_lounge(world: World, monkeypatch) -> None:
    p = world.passengers[0]
    landed = _land_after_read(monkeypatch, world, p.token_id, "PUT", f"/v1/tokens/{p.token_id}/hold",
                              {"reason": "document_check"})
    async with world.svc.client(world.keys["lounge"]) as lounge:
        d = await j.identify(lounge, p.seen_photo)
    assert landed == ["immigration_cleared"]  # read before the hold: the rules saw an admissible token
    assert (d["decision"], d["reason"]) == ("refer", "state_changed")
    row = await _lounge_state(world, p.token_id)
    assert row["on_hold"] and row["last_lounge_at"] is None
    event = await _lounge_event(world, d["event_id"])
    assert (event["decision"], event["reason"]) == ("refer", "state_changed")
    # Asked again, the lounge now sees the hold.
    monkeypatch.undo()
    async with world.svc.client(world.keys["lounge"]) as lounge:
        d = await j.identify(lounge, p.seen_photo)
    assert (d["decision"], d["reason"]) == ("refer", "see_officer")


async def test_a_revoke_landing_between_read_and_write_does_not_admit_to_the_lounge(world: World,
                                                                                      monkeypatch) -> None:
    p = world.passengers[1]
    landed = _land_after_read(monkeypatch, world, p.token_id, "POST", f"/v1/tokens/{p.token_id}/revoke",
                              {"reason": "offloaded"})
    async with world.svc.client(world.keys["lounge"]) as lounge:
        d = await j.identify(lounge, p.seen_photo)
    assert landed == ["immigration_cleared"]
    assert (d["decision"], d["reason"]) == ("refer", "state_changed")
    row = await _lounge_state(world, p.token_id)
    assert row["state"] == "revoked" and row["last_lounge_at"] is None
    event = await _lounge_event(world, d["event_id"])
    assert (event["decision"], event["reason"], event["token_id"]) == ("refer", "state_changed", None)


async def test_without_an_interleaving_the_lounge_admits_and_stamps_the_entry(world: World) -> None:
    # The control: the same path admits a passenger nothing happened to.
    p = world.passengers[2]
    async with world.svc.client(world.keys["lounge"]) as lounge:
        d = await j.identify(lounge, p.seen_photo)
    assert (d["decision"], d["reason"]) == ("proceed", "matched")
    row = await _lounge_state(world, p.token_id)
    assert row["state"] == "immigration_cleared" and row["last_lounge_at"] is not None
