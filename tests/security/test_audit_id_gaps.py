"""Attack: an admin counts audit ids to spot a watchlist hit (issue 17, tell 3).

``watchlist.*`` rows were hidden from GET /v1/audit but took ids from its sequence, so two admin
look-ups around a hit came out 2 apart and around an ordinary decision 1 apart. Now the
authority's trail has its own table and ids: everything an admin sees is gap-free, across an
enrolment on the watchlist, a hit at the e-channel and the alert's resolution.
"""

from __future__ import annotations

import pytest

from flighttoken.testing import RunningService, identities
from tests.support import journey as j
from tests.watchlist.helpers import extra_keys, pick_subject, subject_body


@pytest.fixture(scope="module")
async def world(make_service, face_engine):
    settings = make_service.settings()
    subject = pick_subject(face_engine, settings.faces_dir, settings.watchlist.watchlist_threshold,
                           settings.decisions.e_channel_threshold)
    async with make_service(settings, authority=True) as svc:
        pool = svc.services.db()
        yield svc, {**await j.make_devices(pool), **await extra_keys(pool)}, subject


async def _visible_ids(svc: RunningService, admin_key: str) -> list[int]:
    """Every audit id the admin's GET /v1/audit shows, page by page (each read is itself audited)."""
    ids: list[int] = []
    cursor = None
    async with svc.client(admin_key) as admin:
        while True:
            r = await admin.get("/v1/audit", params={"limit": 500, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            ids += [e["id"] for e in r.json()["events"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                return ids


async def test_admin_audit_ids_have_no_gap_around_a_watchlist_hit(world) -> None:
    svc, keys, subject = world
    admin = keys["admin"]
    stranger = next(p[0] for n, p in identities(svc.services.settings.faces_dir, min_photos=2) if n != subject.name)
    async with svc.authority_client(keys["authority"]) as authority:
        r = await authority.post("/v1/watchlist/subjects", json=subject_body([subject.watchlist_photo]))
        assert r.status_code == 201, r.text

    # Each read is itself audited: reads before and after each step bracket it in the trail.
    await _visible_ids(svc, admin)
    await _visible_ids(svc, admin)
    async with svc.client(keys["e_channel"]) as e_channel:
        assert (await j.identify(e_channel, stranger))["decision"] == "refer"           # an ordinary miss
        await _visible_ids(svc, admin)
        assert (await j.identify(e_channel, subject.probe_photo))["decision"] == "refer"  # a watchlist hit
        await _visible_ids(svc, admin)
    async with svc.authority_client(keys["authority"]) as authority:
        [alert] = (await authority.get("/v1/alerts")).json()["alerts"]  # it was a hit
        r = await authority.post(f"/v1/alerts/{alert['id']}/resolve",
                                 json={"outcome": "false_alarm", "resolved_by": "Sgt. Chan"})
        assert r.status_code == 200, r.text
    await _visible_ids(svc, admin)
    reads = await _visible_ids(svc, admin)  # the five reads above, nothing else

    assert len(reads) == 5
    around = {"miss": reads[2] - reads[1], "hit": reads[3] - reads[2], "resolve": reads[4] - reads[3]}
    assert around == {"miss": 1, "hit": 1, "resolve": 1}
    assert reads == list(range(reads[0], reads[0] + len(reads)))
    # The authority's own trail is kept, in its own table and sequence.
    actions = [r["action"] for r in await svc.services.db().fetch(
        "SELECT action FROM authority_audit_events ORDER BY id")]
    assert actions == ["watchlist.subject.enrol", "watchlist.alert", "watchlist.alert.resolve"]
