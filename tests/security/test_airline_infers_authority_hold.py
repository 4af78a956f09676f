"""Tell 5 of issue 17: the airline could infer an authority hold. Its passenger referred
``see_officer`` while the airline's own hold API said ``staff_hold: false``, and its figures
showed a hit as a poor capture nobody's. Now a hit and a random secondary referral are the same
in every view airline staff (and the airport's admin) have: the flight's progress, the ops
summary, the audit trail of decisions, the token and its hold state. Checked field by field.

Real faces, real PostgreSQL, real HTTP; every would-be proceed is referred at random
(``secondary_referral_share`` 1) so the random referral is deterministic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from flighttoken.ops.summary import CACHE_SECONDS
from tests.support.cover import CoverWorld, cover_world, strip


@dataclass
class Seen:
    world: CoverWorld
    events: list[int]
    """Journey event ids of the hit, then of the random referral."""
    summaries: list[dict[str, Any]]
    """The airline's /v1/ops/summary before, after the hit, after the random referral."""


async def _summary(world: CoverWorld) -> dict[str, Any]:
    await asyncio.sleep(CACHE_SECONDS + 0.1)  # past the dashboard's one-second reuse
    async with world.svc.client(world.keys["ops_cx"]) as agent:
        r = await agent.get("/v1/ops/summary")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
async def seen(make_service, face_engine):
    async with cover_world(make_service, face_engine) as world:
        summaries, events = [await _summary(world)], []
        async with world.svc.client(world.keys["e_channel"]) as e_channel:
            for t in (world.wanted, world.clean):
                r = await e_channel.post("/v1/identify", content=t.subject.probe_photo.read_bytes(),
                                         headers={"Content-Type": "image/jpeg"})
                assert (r.status_code, r.json()["reason"]) == (200, "see_officer"), r.text
                events.append(r.json()["event_id"])
                summaries.append(await _summary(world))
        yield Seen(world, events, summaries)


def _e_channel(summary: dict[str, Any]) -> dict[str, Any]:
    stats = [t for t in summary["touchpoints"] if t["touchpoint"] == "e_channel"]
    return stats[0] if stats else {"decisions": 0, "refers": 0, "refer_reasons": {}}


async def test_flight_progress_shows_a_hit_as_a_random_referral(seen: Seen) -> None:
    w = seen.world
    async with w.svc.client(w.keys["ops_cx"]) as agent:
        hit, random_referral = [(await agent.get(f"/v1/flights/{t.flight['id']}/progress")).json()
                                for t in (w.wanted, w.clean)]
    assert strip(hit) == strip(random_referral)
    assert (hit["referred"], hit["referred_by_reason"]) == (1, {"see_officer": 1})
    assert (hit["enrolled"], hit["immigration_cleared"]) == (1, 0)


async def test_the_ops_summary_moves_the_same_for_a_hit_and_a_random_referral(seen: Seen) -> None:
    before, after_hit, after_random = (_e_channel(s) for s in seen.summaries)

    def step(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        reasons = {r: b["refer_reasons"].get(r, 0) - a["refer_reasons"].get(r, 0)
                   for r in set(a["refer_reasons"]) | set(b["refer_reasons"])}
        return {"decisions": b["decisions"] - a["decisions"], "refers": b["refers"] - a["refers"],
                "refer_reasons": {r: n for r, n in reasons.items() if n}}

    assert step(before, after_hit) == step(after_hit, after_random) == \
        {"decisions": 1, "refers": 1, "refer_reasons": {"see_officer": 1}}
    flights = {f["flight_id"]: f for f in seen.summaries[-1]["flights"]}
    w = seen.world
    assert strip(flights[w.wanted.flight["id"]]) == strip(flights[w.clean.flight["id"]])


async def test_audit_decisions_show_a_hit_as_a_random_referral(seen: Seen) -> None:
    w = seen.world
    async with w.svc.client(w.keys["admin"]) as admin:
        r = await admin.get("/v1/audit/decisions", params={"decision": "refer", "limit": 100})
    assert r.status_code == 200, r.text
    by_id = {d["id"]: d for d in r.json()["decisions"]}
    hit, random_referral = (by_id[e] for e in seen.events)
    assert set(hit) == set(random_referral)
    measured = {"score", "margin", "latency_ms"}
    # Present the same way (a value, or none), whatever the value.
    assert {k: hit[k] is None for k in measured} == {k: random_referral[k] is None for k in measured}
    assert hit["score"] is not None
    assert strip(hit, frozenset({"id", "at", "flight_id"} | measured)) == \
        strip(random_referral, frozenset({"id", "at", "flight_id"} | measured))
    assert (hit["flight_id"], random_referral["flight_id"]) == (w.wanted.flight["id"], w.clean.flight["id"])
    assert (hit["reason"], hit["token_id"]) == ("see_officer", None)


async def test_the_token_and_its_hold_state_show_a_hit_as_a_random_referral(seen: Seen) -> None:
    w = seen.world
    async with w.svc.client(w.keys["ops_cx"]) as agent:
        tokens = [(await agent.get(f"/v1/tokens/{t.token_id}")).json() for t in (w.wanted, w.clean)]
        # The airline's own hold API: no staff hold, and a see_officer it can now explain.
        holds = [await agent.delete(f"/v1/tokens/{t.token_id}/hold") for t in (w.wanted, w.clean)]
    hit, random_referral = tokens
    assert set(hit) == set(random_referral)
    assert strip(hit) == strip(random_referral)
    assert (hit["state"], hit["on_hold"], hit["staff_hold"], hit["officer_referral"], hit["cleared_at"]) == \
        ("enrolled", True, False, True, None)
    assert [h.status_code for h in holds] == [200, 200]
    assert strip(holds[0].json()) == strip(holds[1].json()) == {"staff_hold": False, "officer_referral": True}
