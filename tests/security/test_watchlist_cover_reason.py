"""Tell 4 of issue 17: the cover reason was falsifiable. A hit answered the e-channel
``low_detection_score``, yet the frame passes every capture check (``flighttoken faces check``
shows a detector score of 0.82) and gets another answer elsewhere: anyone replaying a frame
learned of the hit. Now a hit is a random secondary referral's twin: ``see_officer``, field by
field, and only the authority's alerts tell them apart.

Real faces, real PostgreSQL, real HTTP; every would-be proceed is referred at random
(``secondary_referral_share`` 1) so the random referral is deterministic.
"""

from __future__ import annotations

import pytest

from flighttoken.vocabulary import CAPTURE_REASONS, DecisionReason
from tests.support import journey as j
from tests.support.cover import CoverWorld, cover_world, header_names, strip
from tests.watchlist.helpers import pick_subject, subject_body


@pytest.fixture(scope="module")
async def world(make_service, face_engine):
    async with cover_world(make_service, face_engine) as w:
        yield w


@pytest.fixture(scope="module")
async def answers(world: CoverWorld):
    """The e-channel's answers: the wanted person (a hit), then the clean passenger (random)."""
    async with world.svc.client(world.keys["e_channel"]) as e_channel:
        out = []
        for t in (world.wanted, world.clean):
            r = await e_channel.post("/v1/identify", content=t.subject.probe_photo.read_bytes(),
                                     headers={"Content-Type": "image/jpeg"})
            assert r.status_code == 200, r.text
            out.append(r)
    return out


async def test_a_hit_answers_the_e_channel_exactly_as_a_random_referral(world: CoverWorld, answers) -> None:
    hit, random_referral = answers
    assert hit.json()["reason"] != DecisionReason.LOW_DETECTION_SCORE
    assert strip(hit.json()) == strip(random_referral.json()) == {"decision": "refer", "reason": "see_officer"}
    assert set(hit.json()) == set(random_referral.json()) == {"decision", "reason", "event_id"}
    assert header_names(hit) == header_names(random_referral)
    assert hit.headers["content-type"] == random_referral.headers["content-type"]


async def test_replaying_the_hit_frame_contradicts_nothing(world: CoverWorld, answers) -> None:
    # The frame is a good capture, so no capture reason could have been honest...
    analysis = world.svc.services.engine.analyse_sync(world.wanted.subject.probe_photo.read_bytes())
    assert analysis.template is not None and analysis.quality_failures == []
    assert answers[0].json()["reason"] not in CAPTURE_REASONS
    # ...and replayed at the lounge it gets what the randomly referred passenger's frame gets there.
    async with world.svc.client(world.keys["lounge"]) as lounge:
        replays = [await j.identify(lounge, t.subject.probe_photo) for t in (world.wanted, world.clean)]
    assert strip(replays[0]) == strip(replays[1]) == {"decision": "refer", "reason": "see_officer"}


async def test_replaying_a_listed_strangers_frame_gives_what_any_stranger_gets(world: CoverWorld, answers) -> None:
    """The issue's own replay: someone on the list but not travelling (no token to hold)."""
    svc, settings = world.svc, world.svc.services.settings
    listed, unlisted = (pick_subject(svc.services.engine, settings.faces_dir, settings.watchlist.watchlist_threshold,
                                     settings.decisions.e_channel_threshold, skip=k) for k in (2, 3))
    async with svc.authority_client(world.keys["authority"]) as authority:
        r = await authority.post("/v1/watchlist/subjects", json=subject_body([listed.watchlist_photo], case="X/2"))
        assert r.status_code == 201, r.text
        before = len((await authority.get("/v1/alerts", params={"status": "all"})).json()["alerts"])
    seen = {}
    for kind in ("e_channel", "lounge"):
        async with svc.client(world.keys[kind]) as touchpoint:
            seen[kind] = [await j.identify(touchpoint, s.probe_photo) for s in (listed, unlisted)]
    for kind, (hit, stranger) in seen.items():
        assert strip(hit) == strip(stranger) == {"decision": "refer", "reason": "no_match"}, kind
    async with svc.authority_client(world.keys["authority"]) as authority:
        after = (await authority.get("/v1/alerts", params={"status": "all"})).json()["alerts"]
    assert [(a["kind"], a["case_reference"], a["token"]) for a in after[before:]] == [("watchlist", "X/2", None)]


async def test_only_the_authority_tells_a_hit_from_a_random_referral(world: CoverWorld, answers) -> None:
    async with world.svc.authority_client(world.keys["authority"]) as authority:
        listed = (await authority.get("/v1/alerts", params={"status": "open"})).json()["alerts"]
    by_token = {a["token"]["token_id"]: a for a in listed if a["token"]}
    hit, random_referral = by_token[world.wanted.token_id], by_token[world.clean.token_id]
    assert (hit["kind"], hit["subject_id"], hit["case_reference"]) == ("watchlist", world.subject_id,
                                                                        "HKPF/2026/0001")
    assert hit["score"] >= world.svc.services.settings.watchlist.watchlist_threshold
    assert (random_referral["kind"], random_referral["subject_id"], random_referral["case_reference"],
            random_referral["score"]) == ("random", None, None, None)
    assert hit["touchpoint"] == random_referral["touchpoint"] == "e_channel"
    # Other keys do not even find the alerts.
    async with world.svc.client(world.keys["ops_cx"]) as agent, world.svc.client(world.keys["e_channel"]) as gate:
        assert (await agent.get("/v1/alerts")).status_code == 404
        assert (await gate.get("/v1/alerts")).status_code == 404

    # Officers release a random referral through the same API; the passenger then clears.
    async with world.svc.authority_client(world.keys["authority"]) as authority:
        r = await authority.post(f"/v1/alerts/{random_referral['id']}/resolve",
                                 json={"outcome": "cleared", "resolved_by": "Sgt. Chan 2231"})
        assert (r.status_code, r.json()["status"], r.json()["kind"]) == (200, "cleared", "random")
    async with world.svc.client(world.keys["ops_cx"]) as agent:
        token = (await agent.get(f"/v1/tokens/{world.clean.token_id}")).json()
    assert (token["on_hold"], token["officer_referral"]) == (False, False)


async def test_an_enrolment_time_hit_answers_the_kiosk_like_a_clean_enrolment(make_service, world: CoverWorld) -> None:
    async with make_service(authority=True, watchlist_touchpoints="e_channel,kiosk",
                            secondary_referral_share=0.0) as svc:
        keys = world.keys  # the same database: the module's keys and watchlist
        async with svc.client(keys["admin"]) as admin:
            flight = await j.create_flight(admin, "990", "24", in_minutes=300)  # another window: not a duplicate
        async with svc.authority_client(keys["authority"]) as authority:
            before = {a["id"] for a in (await authority.get("/v1/alerts", params={"status": "all"})).json()["alerts"]}
        async with svc.client(keys["kiosk"]) as kiosk:
            answers = [await kiosk.post("/v1/enrolments", json=j.enrolment(
                t.subject.enrol_photo, flight["id"], document_number=j.document_number(50 + i)))
                for i, t in enumerate((world.wanted, world.clean))]
        assert [r.status_code for r in answers] == [201, 201]
        hit, clean = (r.json() for r in answers)
        assert set(hit) == set(clean) and strip(hit) == strip(clean)
        assert header_names(answers[0]) == header_names(answers[1])
        async with svc.authority_client(keys["authority"]) as authority:
            new = [a for a in (await authority.get("/v1/alerts", params={"status": "all"})).json()["alerts"]
                   if a["id"] not in before]
    assert [(a["kind"], a["touchpoint"], a["token"]["token_id"]) for a in new] == \
        [("watchlist", "kiosk", hit["token_id"])]
