"""Attack: stop every instance of an airport by spoiling one template row.

On the original code one sealed template that fails to decrypt (a flipped byte, or two rows'
ciphertexts swapped: AES-GCM binds each to its token id) made ``rebuild_galleries`` raise, so no
instance could start, and the log named no row. Now the row is set aside: the instance starts and is
ready, the other passengers still match, the spoiled tokens are held (see_officer wherever the face
is still known), and /health/ready, /metrics and the audit name them.

Real HTTP, real PostgreSQL, real faces; the rows are spoiled with SQL between two start-ups.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from flighttoken.testing import identities
from tests.support import journey as j
from tests.support.world import Passenger, World
from tests.watchlist.helpers import extra_keys, subject_body

N = 8
CAPTURE_PROBLEMS = {"no_face", "face_too_small", "too_blurry", "too_dark", "too_bright", "head_turned",
                    "head_tilted", "low_detection_score", "tailgating"}




@dataclass(kw_only=True)
class CorruptWorld(World):
    """``svc`` started before the rows were spoiled (it still holds the faces); ``second`` after."""

    second: Any
    flight: dict
    good: list[Passenger]
    corrupt: Passenger
    swapped: tuple[Passenger, Passenger]


@pytest.fixture(scope="module")
async def world(make_service):
    settings = make_service.settings()
    people = identities(settings.faces_dir, min_photos=3)[:N]
    passengers = [Passenger(enrol_photo=photos[0], document=j.document_number(i))
                  for i, (_, photos) in enumerate(people)]
    async with make_service(settings, authority=True) as first:
        pool = first.services.db()
        keys = await j.make_devices(pool) | await extra_keys(pool)
        async with first.client(keys["admin"]) as admin:
            flight = await j.create_flight(admin, "884", "23")
        async with first.client(keys["kiosk"]) as kiosk:
            for p in passengers:
                r = await kiosk.post("/v1/enrolments", json=j.enrolment(p.photo, flight["id"],
                                                                        document_number=p.document))
                if r.status_code == 201:
                    p.token_id = r.json()["token_id"]
        enrolled = [p for p in passengers if p.token_id]
        assert len(enrolled) >= 6
        watch_photos = identities(settings.faces_dir, min_photos=3)[-1][1][:2]
        async with first.authority_client(keys["authority"]) as authority:
            r = await authority.post("/v1/watchlist/subjects", json=subject_body(watch_photos))
            assert r.status_code == 201 and r.json()["templates"] == 2, r.text
            subject_id = uuid.UUID(r.json()["id"])

        corrupt, a, b = enrolled[:3]
        async with pool.acquire() as conn:
            # One flipped byte in the ciphertext body.
            await conn.execute("UPDATE templates SET sealed = set_byte(sealed, 40, get_byte(sealed, 40) # 1)"
                               " WHERE token_id = $1", uuid.UUID(corrupt.token_id))
            # Two valid ciphertexts, each under the other's token id.
            await conn.execute(
                "UPDATE templates t SET sealed = o.sealed FROM templates o"
                " WHERE (t.token_id, o.token_id) IN (($1::uuid, $2::uuid), ($2::uuid, $1::uuid))",
                uuid.UUID(a.token_id), uuid.UUID(b.token_id))
            await conn.execute("UPDATE watchlist_templates SET sealed = set_byte(sealed, 40, get_byte(sealed, 40) # 1)"
                               " WHERE subject_id = $1 AND n = 0", subject_id)
        async with make_service(settings, authority=True) as second:
            yield CorruptWorld(svc=first, second=second, keys=keys, flight=flight, good=enrolled[3:], corrupt=corrupt,
                               swapped=(a, b))


def _bad(world: CorruptWorld) -> list[Passenger]:
    return [world.corrupt, *world.swapped]


async def test_an_instance_starts_and_is_ready_despite_spoiled_template_rows(world: CorruptWorld) -> None:
    async with world.second.client() as anyone:
        r = await anyone.get("/health/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert sorted(body["quarantined_templates"]) == sorted(p.token_id for p in _bad(world))
    assert "watchlist" not in r.text  # the public listener never speaks of the watchlist


async def test_spoiled_rows_are_counted_in_metrics(world: CorruptWorld) -> None:
    async with world.second.client() as anyone:
        public = (await anyone.get("/metrics")).text
    async with world.second.authority_client() as authority:
        private = (await authority.get("/metrics")).text
    quarantined = re.search(r"^flighttoken_quarantined_templates (\S+)$", public, re.M)
    assert quarantined is not None, public
    assert float(quarantined.group(1)) == pytest.approx(3)
    watchlist = re.search(r"^flighttoken_quarantined_watchlist_templates (\S+)$", private, re.M)
    assert watchlist is not None, private
    assert float(watchlist.group(1)) == pytest.approx(1)


async def test_spoiled_rows_are_audited_and_their_tokens_held_for_staff(world: CorruptWorld) -> None:
    async with world.second.client(world.keys["admin"]) as admin:
        r = await admin.get("/v1/audit", params={"action": "template.quarantine"})
        assert r.status_code == 200, r.text
        events = r.json()["events"]
        assert sorted(e["token_id"] for e in events) == sorted(p.token_id for p in _bad(world))
        for p in _bad(world):
            view = (await admin.get(f"/v1/tokens/{p.token_id}")).json()
            assert view["on_hold"] is True, view
        assert (await admin.get(f"/v1/tokens/{world.good[0].token_id}")).json()["on_hold"] is False


async def test_the_other_passengers_still_match_and_the_spoiled_ones_see_an_officer(world: CorruptWorld) -> None:
    async with world.svc.client(world.keys["e_channel"]) as e_channel:
        # The instance that loaded these faces before the rows were spoiled still knows them: the hold
        # sends each to an officer there too.
        for p in _bad(world):
            d = await j.identify(e_channel, p.photo)
            assert (d["decision"], d["reason"]) == ("refer", "see_officer"), d
    async with world.second.client(world.keys["e_channel"]) as e_channel:
        for p in _bad(world):
            d = await j.identify(e_channel, p.photo)
            assert d["decision"] == "refer", d
        proceeded = 0
        for p in world.good:
            d = await j.identify(e_channel, p.photo)
            assert d["decision"] == "proceed" or d["reason"] in CAPTURE_PROBLEMS, d
            if d["decision"] == "proceed":
                assert d["token_id"] == p.token_id
                proceeded += 1
        assert proceeded >= len(world.good) - 1


async def test_a_spoiled_token_sees_an_officer_at_the_lounge_and_the_gate(world: CorruptWorld) -> None:
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post(f"/v1/flights/{world.flight['id']}/state", json={"state": "boarding"})
        assert r.status_code == 200, r.text
    for key in ("lounge", "gate23"):
        async with world.svc.client(world.keys[key]) as device:
            for p in _bad(world):
                d = await j.identify(device, p.photo)
                assert (d["decision"], d["reason"]) == ("refer", "see_officer"), (key, d)
