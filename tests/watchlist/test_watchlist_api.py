"""The watchlist API and its guarantees: validation, sealed storage, expiry, isolation from the
flight purge, staff holds beside authority holds, stream replay, kiosk and lounge screening when
configured. Real faces, real PostgreSQL, real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from flighttoken.crypto.keys import WrappedKey
from flighttoken.crypto.sealing import DecryptionError
from flighttoken.db.queries import devices as device_q
from flighttoken.journey.cover import screen_enrolment
from flighttoken.testing import identities
from flighttoken.watchlist import service, vault
from tests.support import journey as j
from tests.watchlist.helpers import AlertStream, extra_keys, pick_subject, subject_body


def _blank_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((240, 240, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
async def env(make_service):
    async with make_service(watchlist_touchpoints="e_channel,lounge,kiosk", authority=True) as svc:
        pool = svc.services.db()
        keys = {**await j.make_devices(pool), **await extra_keys(pool)}
        async with svc.client(keys["admin"]) as admin:
            flight = await j.create_flight(admin, "900", "23")
        yield svc, keys, flight


async def _count(svc, sql: str, *args) -> int:
    return await svc.services.db().fetchval(sql, *args)


async def test_bad_enrolments_are_refused_and_change_nothing(env) -> None:
    svc, keys, _ = env
    photo = identities(svc.services.settings.faces_dir, min_photos=2)[0][1][0]
    now = datetime.now(UTC)
    async with svc.authority_client(keys["authority"]) as authority:
        past = await authority.post("/v1/watchlist/subjects",
                                    json=subject_body([photo], expires_at=now - timedelta(minutes=1)))
        far = await authority.post("/v1/watchlist/subjects", json=subject_body([photo], days=400))
        faceless = await authority.post("/v1/watchlist/subjects", json=subject_body([_blank_jpeg()]))
        unknown_field = await authority.post("/v1/watchlist/subjects", json={**subject_body([photo]), "x": 1})
        bad_case = await authority.post("/v1/watchlist/subjects", json={**subject_body([photo]), "case_reference": ""})
        not_an_image = await authority.post("/v1/watchlist/subjects", json=subject_body([b"not a jpeg"]))
    assert (past.status_code, past.json()["code"]) == (422, "invalid_expiry")
    assert (far.status_code, far.json()["code"]) == (422, "invalid_expiry")
    assert (faceless.status_code, faceless.json()["code"], faceless.json()["reasons"]) == \
        (422, "capture_rejected", ["no_face"])
    assert unknown_field.status_code == 400 and bad_case.status_code == 400
    assert not_an_image.status_code in (415, 422)
    assert await _count(svc, "SELECT count(*) FROM watchlist_subjects") == 0
    assert await _count(svc, "SELECT count(*) FROM watchlist_templates") == 0


async def test_unusable_photos_are_reported_and_templates_are_sealed(env) -> None:
    svc, keys, _ = env
    _, photos = identities(svc.services.settings.faces_dir, min_photos=3)[0]
    async with svc.authority_client(keys["authority"]) as authority:
        r = await authority.post("/v1/watchlist/subjects", json=subject_body([photos[0], _blank_jpeg(), photos[1]]))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["templates"] == 2 and body["rejected_photos"] == [{"index": 1, "reasons": ["no_face"]}]
    subject_id = uuid.UUID(body["id"])
    rows = await svc.services.db().fetch(
        "SELECT t.n, t.sealed, t.key_id, t.model_id FROM watchlist_templates t WHERE subject_id = $1 ORDER BY n",
        subject_id)
    vector = svc.services.engine.analyse_sync(photos[0].read_bytes()).template.vector.astype("<f4")
    plain = vector.tobytes()
    assert [r["n"] for r in rows] == [0, 1]
    assert all(plain[:64] not in bytes(r["sealed"]) for r in rows)
    dek = await vault.key(svc.services.vault, svc.services.db(), rows[0]["key_id"])
    opened = vault.open_template(dek, subject_id, 0, rows[0]["model_id"], bytes(rows[0]["sealed"]))
    np.testing.assert_allclose(opened, vector, rtol=0, atol=1e-6)
    with pytest.raises(DecryptionError):  # bound to its subject and photo: a copied row won't open
        vault.open_template(dek, subject_id, 1, rows[0]["model_id"], bytes(rows[0]["sealed"]))
    # The watchlist key is its own: a flight's context cannot unwrap it.
    key_row = await svc.services.vault.keystore.pool.fetchrow("SELECT id, kek_id, wrapped FROM watchlist_data_keys")
    with pytest.raises(DecryptionError):
        svc.services.vault.master.unwrap(WrappedKey(key_row["kek_id"], bytes(key_row["wrapped"])),
                                         b"flight:" + str(key_row["id"]).encode())
    async with svc.authority_client(keys["authority"]) as authority:
        r = await authority.post(f"/v1/watchlist/subjects/{subject_id}/remove", json={"removed_by": "Insp. Wong"})
        again = await authority.post(f"/v1/watchlist/subjects/{subject_id}/remove", json={"removed_by": "Insp. Wong"})
        missing = await authority.post(f"/v1/watchlist/subjects/{uuid.uuid4()}/remove", json={"removed_by": "x"})
        listed = await authority.get("/v1/watchlist/subjects", params={"status": "removed"})
    assert r.status_code == 200 and again.status_code == 200
    assert (missing.status_code, missing.json()["code"]) == (404, "subject_not_found")
    assert [s["id"] for s in listed.json()["subjects"]] == [str(subject_id)]
    assert await _count(svc, "SELECT count(*) FROM watchlist_templates WHERE subject_id = $1", subject_id) == 0
    assert subject_id not in svc.services.watchlist.gallery


async def test_lounge_screening_when_listed_and_no_token_to_hold(env) -> None:
    svc, keys, _ = env
    settings = svc.services.settings
    s = pick_subject(svc.services.engine, settings.faces_dir, settings.watchlist.watchlist_threshold,
                     settings.decisions.lounge_threshold)
    async with svc.authority_client(keys["authority"]) as authority:
        r = await authority.post("/v1/watchlist/subjects", json=subject_body([s.watchlist_photo], case="LOUNGE-1"))
        assert r.status_code == 201, r.text
        async with AlertStream(authority) as stream, svc.client(keys["lounge"]) as lounge:
            d = await j.identify(lounge, s.probe_photo)
            alert = await stream.next()
    # Not a passenger: the answer any stranger gets (issue 17: a hit never changes a refusal).
    assert (d["decision"], d["reason"]) == ("refer", "no_match")
    assert alert["kind"] == "watchlist"
    assert alert["touchpoint"] == "lounge" and alert["location"] == {"terminal": "T1", "lounge_id": "L1"}
    assert alert["token"] is None and alert["case_reference"] == "LOUNGE-1"


async def test_a_subject_past_its_expiry_never_matches_and_its_templates_go(env) -> None:
    svc, keys, _ = env
    settings = svc.services.settings
    s = pick_subject(svc.services.engine, settings.faces_dir, settings.watchlist.watchlist_threshold,
                     settings.decisions.e_channel_threshold, skip=1)
    expires = datetime.now(UTC) + timedelta(seconds=2)
    async with svc.authority_client(keys["authority"]) as authority:
        r = await authority.post("/v1/watchlist/subjects", json=subject_body([s.watchlist_photo], case="SHORT-1",
                                                                             expires_at=expires))
        assert r.status_code == 201, r.text
        subject_id = uuid.UUID(r.json()["id"])
        alerts_before = await _count(svc, "SELECT count(*) FROM alerts")
        async with svc.client(keys["e_channel"]) as e_channel:
            assert (await j.identify(e_channel, s.probe_photo))["reason"] == "no_match"
            assert await _count(svc, "SELECT count(*) FROM alerts") == alerts_before + 1
            await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
            d = await j.identify(e_channel, s.probe_photo)
        assert d["reason"] == "no_match"
        assert await _count(svc, "SELECT count(*) FROM alerts") == alerts_before + 1, "expired: no alert"
        assert await service.expire_due(svc.services) == 1
        listed = (await authority.get("/v1/watchlist/subjects", params={"status": "expired"})).json()["subjects"]
    assert [(x["id"], x["templates"]) for x in listed] == [(str(subject_id), 0)]
    assert subject_id not in svc.services.watchlist.gallery
    assert await _count(svc, "SELECT count(*) FROM authority_audit_events"
                             " WHERE action = 'watchlist.subject.expire'") == 1


async def test_staff_holds_sit_beside_authority_holds(env) -> None:
    svc, keys, flight = env
    people = identities(svc.services.settings.faces_dir, min_photos=2)
    _, photos = people[5]
    async with svc.client(keys["kiosk"]) as kiosk:
        r = await kiosk.post("/v1/enrolments", json=j.enrolment(photos[0], flight["id"], document_number="H00000001"))
        assert r.status_code == 201, r.text
    token = r.json()["token_id"]
    async with svc.client(keys["ops_ka"]) as other_airline:
        r = await other_airline.put(f"/v1/tokens/{token}/hold", json={"reason": "document_check"})
        assert (r.status_code, r.json()["code"]) == (404, "token_not_found")
    async with svc.client(keys["ops_cx"]) as agent:
        r = await agent.put(f"/v1/tokens/{token}/hold", json={"reason": "document_check"})
        assert r.status_code == 200 and r.json() == {"token_id": token, "staff_hold": True, "officer_referral": False}
    async with svc.client(keys["lounge"]) as lounge:
        d = await j.identify(lounge, photos[1])
    assert (d["decision"], d["reason"]) == ("refer", "see_officer")

    # An authority hold on the same token (the kiosk's screening path, as if the kiosk were listed
    # and the face on the watchlist) survives the agent's release; the agent learns that an officer
    # referral is in force (explaining see_officer), never its cause.
    kiosk_device = await device_q.by_name(svc.services.db(), "test-kiosk")
    assert kiosk_device is not None
    async with svc.authority_client(keys["authority"]) as authority:
        r = await authority.post("/v1/watchlist/subjects", json=subject_body([photos[0]], case="KIOSK-1"))
        assert r.status_code == 201, r.text
    vector = svc.services.engine.analyse_sync(photos[0].read_bytes()).template.vector
    await screen_enrolment(svc.services, kiosk_device, vector, uuid.UUID(token))
    async with svc.client(keys["ops_cx"]) as agent:
        r = await agent.delete(f"/v1/tokens/{token}/hold")
    assert r.status_code == 200 and r.json() == {"token_id": token, "staff_hold": False, "officer_referral": True}
    assert await _count(svc, "SELECT count(*) FROM tokens WHERE id = $1 AND on_hold", uuid.UUID(token)) == 1
    actions = [r["action"] for r in await svc.services.db().fetch(
        "SELECT action FROM audit_events WHERE token_id = $1 ORDER BY id", uuid.UUID(token))]
    assert actions[-2:] == ["token.hold", "token.hold.release"]
    # The authority's alert from the kiosk names the new token; a false alarm frees it.
    async with svc.authority_client(keys["authority"]) as authority:
        alerts = (await authority.get("/v1/alerts", params={"status": "open"})).json()["alerts"]
        [alert] = [a for a in alerts if a["case_reference"] == "KIOSK-1"]
        assert alert["touchpoint"] == "kiosk" and alert["token"]["token_id"] == token
        r = await authority.post(f"/v1/alerts/{alert['id']}/resolve",
                                 json={"outcome": "false_alarm", "resolved_by": "Sgt. Chan"})
        assert r.status_code == 200
    assert await _count(svc, "SELECT count(*) FROM tokens WHERE id = $1 AND on_hold", uuid.UUID(token)) == 0


async def test_the_stream_replays_what_a_reconnecting_console_missed(env) -> None:
    svc, keys, _ = env
    ids = [r["id"] for r in await svc.services.db().fetch("SELECT id FROM alerts ORDER BY id")]
    assert len(ids) >= 2
    async with svc.authority_client(keys["authority"]) as authority, \
            AlertStream(authority, last_event_id=str(ids[0])) as s:
        replayed = [await s.next() for _ in ids[1:]]
        r = await authority.get("/v1/alerts/stream", headers={"Last-Event-ID": "abc"})
    assert [a["id"] for a in replayed] == ids[1:]
    assert (r.status_code, r.json()["code"]) == (400, "invalid_last_event_id")


async def test_the_flight_purge_never_touches_the_watchlist(env) -> None:
    svc, keys, flight = env
    before = await _count(svc, "SELECT count(*) FROM watchlist_templates")
    keys_before = await _count(svc, "SELECT count(*) FROM watchlist_keys")
    async with svc.client(keys["admin"]) as admin:
        for state in ("boarding", "departed"):
            r = await admin.post(f"/v1/flights/{flight['id']}/state", json={"state": state})
            assert r.status_code == 200, r.text
    # The departure purged the flight (its data key is gone) ...
    assert await _count(svc, "SELECT count(*) FROM flight_keys WHERE flight_id = $1", uuid.UUID(flight["id"])) == 0
    # ... and left the watchlist alone.
    assert await _count(svc, "SELECT count(*) FROM watchlist_templates") == before > 0
    assert await _count(svc, "SELECT count(*) FROM watchlist_keys") == keys_before == 1
    active = await _count(svc, "SELECT count(*) FROM watchlist_subjects WHERE removed_at IS NULL"
                               " AND expires_at > now()")
    assert len(svc.services.watchlist.gallery) == active

