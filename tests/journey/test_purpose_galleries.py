"""Purpose-bound galleries (issue 19), over real HTTP, real PostgreSQL and the real face models, on
two instances of one database.

Each touchpoint searches only the people it may admit now, at the threshold for that many faces; a
cleared passenger moves from the e-channel's gallery to the lounge's on every instance within 1 s;
the misuse reasons come from an audit-only search of everyone live that never proceeds.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from flighttoken.decisions.match import misuse_threshold_for, threshold_for
from flighttoken.journey import identify as identify_module
from flighttoken.testing import RunningService, identities
from flighttoken.vocabulary import DeviceKind
from tests.support import journey as j
from tests.support.concurrency import within
from tests.support.world import two_instances

pytestmark = pytest.mark.slow

PROPAGATION_S = 1.0
N_A = 6  # passengers on flight A (gate 23); one more on flight B (gate 24)


@dataclass
class Traveller:
    """An enrolled passenger and photos of them that every threshold under test accepts."""
    token_id: uuid.UUID
    probes: list[Path]  # other photos of them, each a clear match


@dataclass
class TwoInstances:
    """Two instances of one database, and the passengers enrolled through the first."""
    a: RunningService
    b: RunningService
    keys: dict[str, str]
    flight_a: dict
    flight_b: dict
    on_a: list[Traveller]
    on_b: Traveller


def _clear(engine, enrol_photo: Path, probe: Path) -> bool:
    """A pair every threshold under test accepts: good captures, one face, a strong match."""
    a, b = engine.analyse_sync(enrol_photo.read_bytes()), engine.analyse_sync(probe.read_bytes())
    if not (a.quality_ok and b.quality_ok) or a.tailgating or b.tailgating:
        return False
    return float(a.template.vector @ b.template.vector) >= 0.6


@pytest.fixture(scope="module")
async def world(make_service, face_engine):
    settings = make_service.settings()
    async with two_instances(make_service) as (a, b, keys):
        async with a.client(keys["admin"]) as admin:
            flight_a = await j.create_flight(admin, "700", "23")
            flight_b = await j.create_flight(admin, "702", "24", in_minutes=70)
        passengers: list[Traveller] = []
        async with a.client(keys["kiosk"]) as kiosk:
            for _, photos in identities(settings.faces_dir, min_photos=4):
                probes = [p for p in photos[1:4] if _clear(face_engine, photos[0], p)]
                if len(probes) < 2:
                    continue
                flight = flight_a if len(passengers) < N_A else flight_b
                r = await kiosk.post("/v1/enrolments", json=j.enrolment(
                    photos[0], flight["id"], document_number=j.document_number(len(passengers))))
                if r.status_code == 201:
                    passengers.append(Traveller(uuid.UUID(r.json()["token_id"]), probes))
                if len(passengers) == N_A + 1:
                    break
        for p in passengers:
            await within(5, lambda p=p: b.services.galleries.contains(p.token_id))
        yield TwoInstances(a, b, keys, flight_a, flight_b, passengers[:N_A], passengers[N_A])


@pytest.fixture
def sizes(monkeypatch) -> list[tuple[str, DeviceKind, int]]:
    """Every threshold the service asks for: (which search, touchpoint, faces searched)."""
    seen: list[tuple[str, DeviceKind, int]] = []

    def purpose(settings, touchpoint, n):
        seen.append(("purpose", touchpoint, n))
        return threshold_for(settings, touchpoint, n)

    def misuse(settings, touchpoint, n):
        seen.append(("misuse", touchpoint, n))
        return misuse_threshold_for(settings, touchpoint, n)

    monkeypatch.setattr(identify_module, "threshold_for", purpose)
    monkeypatch.setattr(identify_module, "misuse_threshold_for", misuse)
    return seen


def _faces(svc: RunningService, kind: str) -> int:
    """Faces in every gallery of a kind: both flights depart within the clearance horizon, so every
    window (and purpose window) gallery is searched."""
    return sum(svc.services.galleries.sizes_by_kind()[kind])


async def test_a_cleared_passenger_moves_from_the_e_channel_gallery_to_the_lounge_gallery_everywhere(
        world: TwoInstances) -> None:
    p = world.on_a[0]
    for svc in (world.a, world.b):
        assert svc.services.galleries.purposes(p.token_id) == {DeviceKind.E_CHANNEL, DeviceKind.GATE,
                                                               DeviceKind.BAG_DROP, DeviceKind.E_SECURITY_GATE}
    async with world.a.client(world.keys["e_channel"]) as e_channel:
        d = await j.identify(e_channel, p.probes[0])
    assert (d["decision"], d["token_id"]) == ("proceed", str(p.token_id))
    moved = {DeviceKind.LOUNGE, DeviceKind.GATE, DeviceKind.BAG_DROP}
    assert world.a.services.galleries.purposes(p.token_id) == moved  # at once where it was decided
    await within(PROPAGATION_S, lambda: world.b.services.galleries.purposes(p.token_id) == moved)
    async with world.b.client(world.keys["lounge"]) as lounge:
        d = await j.identify(lounge, p.probes[1])
    assert (d["decision"], d["token_id"]) == ("proceed", str(p.token_id))


async def test_thresholds_follow_the_purpose_gallery_searched(world: TwoInstances, sizes) -> None:
    lounge_faces = _faces(world.a, "lounge")
    assert 0 < lounge_faces < _faces(world.a, "window")
    async with world.a.client(world.keys["lounge"]) as lounge:
        d = await j.identify(lounge, world.on_a[0].probes[0])
    assert (d["decision"], d["reason"]) == ("proceed", "matched")
    # The lounge's purpose gallery (the cleared, lounge-eligible), not the whole window.
    assert sizes == [("purpose", DeviceKind.LOUNGE, lounge_faces)]
    sizes.clear()
    e_channel_faces = _faces(world.a, "e_channel")
    assert e_channel_faces == _faces(world.a, "window") - 1  # all but the one who cleared
    async with world.a.client(world.keys["e_channel"]) as e_channel:
        d = await j.identify(e_channel, world.on_a[1].probes[0])
    assert (d["decision"], d["reason"]) == ("proceed", "matched")
    assert sizes == [("purpose", DeviceKind.E_CHANNEL, e_channel_faces)]


async def test_a_second_clearance_is_a_misuse_refusal_never_a_proceed(world: TwoInstances, sizes) -> None:
    for svc in (world.a, world.b):
        sizes.clear()
        async with svc.client(world.keys["e_channel"]) as e_channel:
            d = await j.identify(e_channel, world.on_a[0].probes[1])
        assert (d["decision"], d["reason"]) == ("refer", "already_cleared"), d
        assert "token_id" not in d
        # Not in the e-channel's gallery: found by the misuse search of the whole window.
        assert sizes == [("purpose", DeviceKind.E_CHANNEL, _faces(svc, "e_channel")),
                         ("misuse", DeviceKind.E_CHANNEL, _faces(svc, "window"))]


async def test_the_misuse_search_never_admits_even_when_a_purpose_gallery_lags(world: TwoInstances) -> None:
    """Instance b misses the notification that someone cleared: its lounge gallery lacks them, its
    misuse search finds them, and the journey rules would admit them. The answer is still refer."""
    p = world.on_a[2]
    await world.b.services.sync.stop()
    try:
        async with world.a.client(world.keys["e_channel"]) as e_channel:
            d = await j.identify(e_channel, p.probes[0])
        assert d["decision"] == "proceed"
        await asyncio.sleep(0.3)
        assert DeviceKind.LOUNGE not in world.b.services.galleries.purposes(p.token_id)
        async with world.b.client(world.keys["lounge"]) as lounge:
            d = await j.identify(lounge, p.probes[1])
        assert (d["decision"], d["reason"]) == ("refer", "no_match"), d
    finally:
        await world.b.services.sync.start()  # reconnect → reconcile re-checks membership
    await within(5, lambda: DeviceKind.LOUNGE in world.b.services.galleries.purposes(p.token_id))
    async with world.b.client(world.keys["lounge"]) as lounge:
        d = await j.identify(lounge, p.probes[1])
    assert (d["decision"], d["token_id"]) == ("proceed", str(p.token_id))


async def test_boarded_and_wrong_gate_passengers_are_misuse_refusals(world: TwoInstances) -> None:
    async with world.a.client(world.keys["admin"]) as admin:
        for flight in (world.flight_a, world.flight_b):
            r = await admin.post(f"/v1/flights/{flight['id']}/state", json={"state": "boarding"})
            assert r.status_code == 200, r.text
    p = world.on_a[0]  # cleared
    async with world.a.client(world.keys["gate23"]) as gate:
        d = await j.identify(gate, p.probes[0])
    assert (d["decision"], d["token_id"]) == ("proceed", str(p.token_id))
    assert world.a.services.galleries.purposes(p.token_id) == set()  # boarded: in no purpose gallery
    await within(PROPAGATION_S, lambda: world.b.services.galleries.purposes(p.token_id) == set())
    for svc in (world.a, world.b):
        async with svc.client(world.keys["gate23"]) as gate:
            d = await j.identify(gate, p.probes[1])
        assert (d["decision"], d["reason"]) == ("refer", "already_boarded"), d
        async with svc.client(world.keys["gate24"]) as gate:  # flight B's gate, for a flight-A passenger
            d = await j.identify(gate, world.on_a[3].probes[0])
        assert (d["decision"], d["reason"]) == ("refer", "wrong_flight"), d
        assert "passenger" not in d
    async with world.a.services.db().acquire() as conn:
        audited = await conn.fetch("SELECT detail->>'reason' AS reason FROM audit_events"
                                   " WHERE action = 'gate.identify' AND outcome = 'refused'")
    assert sorted(r["reason"] for r in audited) == ["already_boarded", "already_boarded", "wrong_flight",
                                                    "wrong_flight"]
