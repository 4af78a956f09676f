"""Issue 5 end to end, on real faces: a wanted person is stopped at the e-channel, the gate learns
nothing, the officer is alerted at once, the token is held until the officer resolves the alert.

One LFW identity goes on the watchlist from one photo and enrols as a passenger with another;
200 other enrolled passengers use the same e-channel and must pass unaffected.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from flighttoken.testing import identities
from flighttoken.watchlist.screening import best_hit
from tests.support import journey as j
from tests.support.concurrency import gather_limited
from tests.support.world import Passenger, World
from tests.watchlist.helpers import AlertStream, Subject, extra_keys, pick_subject, subject_body

pytestmark = pytest.mark.slow

N_PASSENGERS = 200




@dataclass(kw_only=True)
class WatchlistWorld(World):
    flight: dict
    subject: Subject
    subject_token: str
    subject_id: str


@pytest.fixture(scope="module")
async def world(make_service, face_engine):
    settings = make_service.settings()
    subject = pick_subject(face_engine, settings.faces_dir, settings.watchlist.watchlist_threshold,
                           settings.decisions.e_channel_threshold)
    async with make_service(settings, authority=True) as svc:
        pool = svc.services.db()
        keys = {**await j.make_devices(pool), **await extra_keys(pool)}
        async with svc.client(keys["admin"]) as admin:
            flight = await j.create_flight(admin, "884", "23")
        # On the watchlist from one photo.
        async with svc.authority_client(keys["authority"]) as authority:
            r = await authority.post("/v1/watchlist/subjects", json=subject_body([subject.watchlist_photo]))
            assert r.status_code == 201, r.text
            subject_id = r.json()["id"]
        people = [(n, p) for n, p in identities(settings.faces_dir, min_photos=2) if n != subject.name]
        passengers = [Passenger(name=n, enrol_photo=p[0], probe=p[1], document=j.document_number(i)) for i, (n, p) in
                      enumerate(people[:N_PASSENGERS])]
        async with svc.client(keys["kiosk"]) as kiosk:
            # The same person enrols as a passenger with a different photo: the kiosk notices nothing.
            r = await kiosk.post("/v1/enrolments", json=j.enrolment(subject.enrol_photo, flight["id"],
                                                                    document_number="W00000001", surname="Lee"))
            assert r.status_code == 201, r.text
            subject_token = r.json()["token_id"]

            async def enrol(p: Passenger):
                r = await kiosk.post("/v1/enrolments", json=j.enrolment(p.photo, flight["id"],
                                                                        document_number=p.document))
                if r.status_code == 201:
                    p.token_id = r.json()["token_id"]
                return r.status_code

            codes = await gather_limited([enrol(p) for p in passengers])
        assert set(codes) <= {201, 422}
        enrolled = [p for p in passengers if p.token_id]
        assert len(enrolled) >= 0.95 * N_PASSENGERS
        yield WatchlistWorld(svc=svc, keys=keys, flight=flight, subject=subject, subject_token=subject_token,
                             subject_id=subject_id, passengers=enrolled)


async def _on_hold(world: WatchlistWorld, token_id: str) -> bool:
    return await world.svc.services.db().fetchval("SELECT on_hold FROM tokens WHERE id = $1", uuid.UUID(token_id))


def _poor_capture(photo: Path) -> bytes:
    image = cv2.imread(str(photo))
    assert image is not None, photo
    ok, buf = cv2.imencode(".jpg", (image * 0.12).astype(np.uint8))
    assert ok
    return buf.tobytes()


async def test_the_subject_is_listed_without_templates(world: WatchlistWorld) -> None:
    async with world.svc.authority_client(world.keys["authority"]) as authority:
        r = await authority.get("/v1/watchlist/subjects")
    assert r.status_code == 200
    [subject] = r.json()["subjects"]
    assert subject["id"] == world.subject_id
    assert (subject["status"], subject["templates"], subject["case_reference"]) == ("active", 1, "HKPF/2026/0001")
    assert not {"template", "templates_sealed", "vector", "sealed", "photos"} & set(subject)


async def test_the_wanted_person_is_referred_at_the_e_channel_like_any_held_passenger(world: WatchlistWorld) -> None:
    svc, keys = world.svc, world.keys
    async with svc.authority_client(keys["authority"]) as authority, AlertStream(authority) as alerts, \
            svc.client(keys["e_channel"]) as e_channel:
        r = await e_channel.post("/v1/identify", content=world.subject.probe_photo.read_bytes(),
                                 headers={"Content-Type": "image/jpeg"})
        # The officer's stream has it within a second of the e-channel's answer.
        alert = await alerts.next(within=1.0)
    assert r.status_code == 200
    hit = r.json()
    # The cover (issue 17): what a random secondary referral, or any held token, answers.
    assert (hit["decision"], hit["reason"]) == ("refer", "see_officer")
    assert set(hit) == {"decision", "reason", "event_id"}

    assert alert["kind"] == "watchlist" and alert["subject_id"] == world.subject_id
    assert alert["token"]["token_id"] == world.subject_token
    assert alert["token"]["flight"] == "CX884" and alert["token"]["name"] == "Lee, Tai Man"
    assert alert["touchpoint"] == "e_channel" and alert["location"] == {"terminal": "T1"}
    assert alert["score"] >= svc.services.settings.watchlist.watchlist_threshold
    assert alert["status"] == "open" and alert["case_reference"] == "HKPF/2026/0001"
    assert await _on_hold(world, world.subject_token)

    # The journey event, which airline and admin readers see, is that of any see_officer refer:
    # the passenger's flight, the match's score and margin, no token.
    async with svc.services.db().acquire() as conn:
        event = await conn.fetchrow("SELECT touchpoint, flight_id, token_id, decision, reason, score, margin"
                                    " FROM journey_events WHERE id = $1", hit["event_id"])
        state = await conn.fetchval("SELECT state FROM tokens WHERE id = $1", uuid.UUID(world.subject_token))
    assert (str(event["flight_id"]), event["token_id"], event["reason"]) == (world.flight["id"], None, "see_officer")
    assert event["score"] is not None
    assert state == "enrolled", "a hit never clears immigration"


async def test_a_hit_on_a_poor_capture_keeps_the_captures_own_answer(world: WatchlistWorld) -> None:
    svc, keys = world.svc, world.keys
    poor = _poor_capture(world.subject.probe_photo)
    alerts_before = await svc.services.db().fetchval("SELECT count(*) FROM alerts")
    async with svc.client(keys["e_channel"]) as e_channel:
        d = await j.identify(e_channel, poor)
    analysis = svc.services.engine.analyse_sync(poor)
    if analysis.template is None:
        pytest.skip("the darkened capture lost its face entirely: nothing to screen")
    assert (d["decision"], d["reason"]) == ("refer", analysis.quality_failures[0])
    hit = await best_hit(svc.services, analysis.template.vector)
    assert await svc.services.db().fetchval("SELECT count(*) FROM alerts") == alerts_before + (hit is not None)


async def test_the_held_token_is_referred_at_the_lounge_and_the_gate(world: WatchlistWorld) -> None:
    probe = world.subject.other_photos[0]
    async with world.svc.client(world.keys["lounge"]) as lounge:
        d = await j.identify(lounge, probe)
    assert (d["decision"], d["reason"]) == ("refer", "see_officer")
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post(f"/v1/flights/{world.flight['id']}/state", json={"state": "boarding"})
        assert r.status_code == 200, r.text
    try:
        async with world.svc.client(world.keys["gate23"]) as gate:
            d = await j.identify(gate, probe)
        assert (d["decision"], d["reason"]) == ("refer", "see_officer")
        assert "passenger" not in d and "token_id" not in d
    finally:
        async with world.svc.client(world.keys["admin"]) as admin:
            await admin.post(f"/v1/flights/{world.flight['id']}/state", json={"state": "scheduled"})


async def test_a_false_alarm_releases_the_hold_and_is_audited(world: WatchlistWorld) -> None:
    async with world.svc.authority_client(world.keys["authority"]) as authority:
        [alert] = [a for a in (await authority.get("/v1/alerts", params={"status": "open"})).json()["alerts"]
                   if a["token"] is not None]
        r = await authority.post(f"/v1/alerts/{alert['id']}/resolve",
                                 json={"outcome": "false_alarm", "resolved_by": "Sgt. Chan 2231"})
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["resolved_by"]) == ("false_alarm", "Sgt. Chan 2231")
        again = await authority.post(f"/v1/alerts/{alert['id']}/resolve",
                                     json={"outcome": "false_alarm", "resolved_by": "Sgt. Chan 2231"})
        changed = await authority.post(f"/v1/alerts/{alert['id']}/resolve",
                                       json={"outcome": "confirmed", "resolved_by": "Sgt. Chan 2231"})
    assert again.status_code == 200
    assert (changed.status_code, changed.json()["code"]) == (409, "alert_already_resolved")
    assert not await _on_hold(world, world.subject_token)
    probe = world.subject.other_photos[0]
    async with world.svc.client(world.keys["lounge"]) as lounge:
        d = await j.identify(lounge, probe)
    # Released: the lounge now applies the ordinary journey rules.
    assert (d["decision"], d["reason"]) == ("refer", "immigration_not_cleared")
    # The authority's trail, in its own table: nothing of it in the admin's audit_events.
    actions = {r["action"] for r in await world.svc.services.db().fetch(
        "SELECT action FROM authority_audit_events WHERE action LIKE 'watchlist.%'")}
    assert {"watchlist.subject.enrol", "watchlist.alert", "watchlist.alert.resolve"} <= actions
    assert await world.svc.services.db().fetchval(
        "SELECT count(*) FROM audit_events WHERE action LIKE 'watchlist.%'") == 0


async def test_a_confirmed_alert_keeps_the_hold_after_the_subject_is_removed(world: WatchlistWorld) -> None:
    svc, keys = world.svc, world.keys
    async with svc.client(keys["e_channel"]) as e_channel:
        d = await j.identify(e_channel, world.subject.probe_photo)
    assert (d["decision"], d["reason"]) == ("refer", "see_officer")
    async with svc.authority_client(keys["authority"]) as authority:
        [alert] = [a for a in (await authority.get("/v1/alerts", params={"status": "open"})).json()["alerts"]
                   if a["token"] is not None]
        r = await authority.post(f"/v1/alerts/{alert['id']}/resolve",
                                 json={"outcome": "confirmed", "resolved_by": "Sgt. Chan 2231", "note": "detained"})
        assert r.status_code == 200 and r.json()["status"] == "confirmed"
        r = await authority.post(f"/v1/watchlist/subjects/{world.subject_id}/remove",
                                 json={"removed_by": "Insp. Wong 4411"})
        assert r.status_code == 200 and r.json()["status"] == "removed" and r.json()["templates"] == 0
    assert await _on_hold(world, world.subject_token)
    assert await svc.services.db().fetchval("SELECT count(*) FROM watchlist_templates") == 0
    before = await svc.services.db().fetchval("SELECT count(*) FROM alerts")
    async with svc.client(keys["e_channel"]) as e_channel:
        d = await j.identify(e_channel, world.subject.probe_photo)
    # Off the watchlist (no new alert), still held: the e-channel says what any hold says.
    assert (d["decision"], d["reason"]) == ("refer", "see_officer")
    assert await svc.services.db().fetchval("SELECT count(*) FROM alerts") == before


async def test_200_other_passengers_pass_unaffected(world: WatchlistWorld) -> None:
    before = await world.svc.services.db().fetchval("SELECT count(*) FROM alerts")
    # Put a second subject (someone not travelling) on the list, so the gallery is not empty.
    async with world.svc.authority_client(world.keys["authority"]) as authority:
        outsider = identities(world.svc.services.settings.faces_dir, max_photos=1)[0][1][0]
        r = await authority.post("/v1/watchlist/subjects", json=subject_body([outsider], case="HKPF/2026/0002"))
        assert r.status_code == 201, r.text
    async with world.svc.client(world.keys["e_channel"]) as e_channel:
        decisions = await gather_limited([j.identify(e_channel, p.seen_photo) for p in world.passengers])
    wrong = [p.name for p, d in zip(world.passengers, decisions, strict=True)
             if d["decision"] == "proceed" and d["token_id"] != p.token_id]
    assert wrong == []
    reasons = Counter(d["reason"] for d in decisions)
    assert reasons["matched"] >= 0.8 * len(world.passengers), reasons
    async with world.svc.services.db().acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM alerts") == before
        held = await conn.fetchval("SELECT count(*) FROM tokens WHERE on_hold")
    assert held == 1  # only the subject's token
