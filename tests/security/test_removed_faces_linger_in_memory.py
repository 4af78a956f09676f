"""Attack: read a removed passenger's face out of the process's memory.

After an opt-out, a revoke, a purge, a watchlist removal or a delay that moves a flight to another
departure window, the removed template must be gone from the galleries' arrays at once: the exact
store's rows and the hnswlib graph's stored (PCA-projected) vectors, tombstones included. On the
original code ``remove`` only marked labels deleted, so every removed face stayed in
the exact store's array and in hnswlib's memory until a rebuild.

Real HTTP, real PostgreSQL, real faces. The galleries are made small enough (``exact_max`` 4,
``graph_dim`` 8) that every flight and the window carry an hnswlib graph, and the window's graph
is projected (it is rebuilt at the second start-up with enough faces to fit the projection).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from flighttoken.flights.windows import window_start
from flighttoken.galleries.index import Gallery
from flighttoken.testing import identities
from flighttoken.vocabulary import DeviceKind
from tests.support import journey as j
from tests.support.concurrency import gather_limited
from tests.support.world import Passenger, World
from tests.watchlist.helpers import extra_keys, subject_body

N_A, N_B, N_C = 36, 4, 4  # the window must hold >= 4 x graph_dim faces for its graph to be projected
GRAPH_DIM = 8
CLOSE = 0.01  # relative L2 distance: a stored vector this near the removed one *is* the removed one




@dataclass(kw_only=True)
class LingerWorld(World):
    watchlist_photos: list[Path]
    spare: list[Passenger] = field(default_factory=list)


def _stored(g: Gallery) -> Iterator[tuple[str, np.ndarray, bool]]:
    """Every vector array the gallery holds: (where, rows, rows are graph-space projections)."""
    yield "exact store", g._store.vectors, False
    graph = g._graph
    if graph is None:
        return
    for s, index in enumerate(graph.shards):
        if index is None:
            continue
        # hnswlib's own serialised state: every slot's stored vector, tombstones included.
        st = cast(tuple[dict[str, Any]], index.__getstate__())[0]  # hnswlib is untyped: its params dict
        rows = st["data_level0"].reshape(-1, st["size_data_per_element"])[: st["cur_element_count"]]
        data = np.ascontiguousarray(rows[:, st["offset_data"]: st["offset_data"] + graph.dim * 4])
        yield f"graph shard {s}", data.view(np.float32), True


def where_held(g: Gallery, vector: np.ndarray) -> list[str]:
    """Where in ``g``'s arrays a vector close to ``vector`` (or to its projection) is stored."""
    v = vector / np.linalg.norm(vector)
    found = []
    for where, rows, projected in _stored(g):
        target = g._graph.project(v[None, :])[0] if projected and g._graph is not None else v
        if len(rows) and float(np.min(np.linalg.norm(rows - target, axis=1))) < CLOSE * float(np.linalg.norm(target)):
            found.append(where)
    return found


def every_gallery(world: LingerWorld) -> list[Gallery]:
    reg = world.svc.services.galleries
    purpose = [g for by_key in reg._purpose.values() for g in by_key.values()]
    return [*reg._flights.values(), *reg._windows.values(), *purpose, world.svc.services.watchlist.gallery._gallery]


def nowhere(galleries: list[Gallery], vectors: dict[str, np.ndarray]) -> dict[str, list[str]]:
    return {k: w for k, v in vectors.items() for g in galleries if (w := where_held(g, v))}


def _vectors_of(g: Gallery, ids: list[str]) -> dict[str, np.ndarray]:
    out = {i: g.vector(i) for i in ids}
    for i, v in out.items():
        held = where_held(g, v)
        # The scan must see a live face (exact store and graph) for its silence afterwards to mean anything.
        assert "exact store" in held and (g._graph is None or any(w.startswith("graph") for w in held)), (i, held)
    return out


@pytest.fixture(scope="module")
async def world(make_service):
    settings = make_service.settings(gallery_exact_max=4, gallery_graph_dim=GRAPH_DIM)
    # Three flights in one departure window, whatever the time of day.
    base = (window_start(datetime.now(UTC) + timedelta(hours=3), settings.galleries.window_seconds)
            + timedelta(minutes=30))
    people = identities(settings.faces_dir, min_photos=2)[: N_A + N_B + N_C + 8]
    async with make_service(settings, authority=True) as svc:
        keys = await j.make_devices(svc.services.db())
        keys |= await extra_keys(svc.services.db())
        flights = {}
        async with svc.client(keys["admin"]) as admin:
            for i, (name, gate) in enumerate([("A", "23"), ("B", "24"), ("C", "23")]):
                r = await admin.post("/v1/flights", json={
                    "airline": "CX", "number": f"90{i}", "gate": gate, "destination": "LAX",
                    "scheduled_departure": (base + timedelta(minutes=i)).isoformat(), "international": True})
                assert r.status_code == 201, r.text
                flights[name] = r.json()
        plan = ["A"] * (N_A + 8) + ["B"] * N_B + ["C"] * N_C
        passengers = [Passenger(enrol_photo=photos[0], probe=photos[1], document=j.document_number(i), flight=plan[i])
                      for i, (_, photos) in enumerate(people[: len(plan)])]
        async with svc.client(keys["kiosk"]) as kiosk:
            async def enrol(p: Passenger) -> None:
                r = await kiosk.post("/v1/enrolments", json=j.enrolment(p.photo, flights[p.flight]["id"],
                                                                        document_number=p.document))
                assert r.status_code in (201, 422), r.text
                if r.status_code == 201:
                    p.token_id = r.json()["token_id"]

            await gather_limited([enrol(p) for p in passengers])
    enrolled = [p for p in passengers if p.token_id]
    assert sum(p.flight == "A" for p in enrolled) >= N_A - 4
    assert {p.flight for p in enrolled} == {"A", "B", "C"}
    watchlist_photos = identities(settings.faces_dir, min_photos=3)[-1][1][:2]
    # A second start: the rebuild fits the window's projection on every face enrolled.
    async with make_service(settings, authority=True) as svc:
        window = svc.services.galleries._windows[datetime.fromisoformat(flights["A"]["window_start"])]
        assert window.graph_dim == GRAPH_DIM, "the window's graph must be projected for this test to cover it"
        yield LingerWorld(svc=svc, keys=keys, flights=flights, passengers=enrolled, watchlist_photos=watchlist_photos)


async def test_an_opted_out_face_is_overwritten_in_memory_at_once(world: LingerWorld) -> None:
    p = next(p for p in world.passengers if p.flight == "A")
    window = world.svc.services.galleries._windows[datetime.fromisoformat(world.flights["A"]["window_start"])]
    vectors = _vectors_of(window, [p.token_id])
    async with world.svc.client(world.keys["kiosk"]) as kiosk:
        r = await kiosk.post("/v1/opt-outs", json={
            "booking_reference": "ABC" + p.document[-3:],
            "document": {"type": "P", "number": p.document, "issuing_state": "HKG"}})
        assert r.status_code == 200, r.text
        assert r.json()["tokens_revoked"] == 1
    world.passengers.remove(p)
    assert nowhere(every_gallery(world), vectors) == {}


async def test_a_revoked_face_is_overwritten_in_memory_at_once(world: LingerWorld) -> None:
    p = next(p for p in world.passengers if p.flight == "A")
    window = world.svc.services.galleries._windows[datetime.fromisoformat(world.flights["A"]["window_start"])]
    vectors = _vectors_of(window, [p.token_id])
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post(f"/v1/tokens/{p.token_id}/revoke", json={"reason": "offloaded"})
        assert r.status_code == 200, r.text
    world.passengers.remove(p)
    assert nowhere(every_gallery(world), vectors) == {}


async def test_a_cleared_face_leaves_the_e_channel_gallery_overwritten_at_once(world: LingerWorld) -> None:
    """Clearing immigration moves the face from the e-channel's purpose gallery to the lounge's:
    the e-channel gallery's arrays no longer hold it."""
    reg = world.svc.services.galleries
    window = datetime.fromisoformat(world.flights["A"]["window_start"])
    e_channel_g = reg._purpose[DeviceKind.E_CHANNEL][window]
    async with world.svc.client(world.keys["e_channel"]) as e_channel:
        for p in [p for p in world.passengers if p.flight == "A"][:4]:
            vectors = _vectors_of(e_channel_g, [p.token_id])
            d = await j.identify(e_channel, p.seen_photo)
            if d["decision"] == "proceed":
                break
    assert d["decision"] == "proceed", d
    assert nowhere([e_channel_g], vectors) == {}
    assert reg.purposes(uuid.UUID(p.token_id)) == {DeviceKind.LOUNGE, DeviceKind.GATE, DeviceKind.BAG_DROP}


async def test_a_purged_flight_leaves_no_face_in_memory_even_in_its_dropped_gallery(world: LingerWorld) -> None:
    reg = world.svc.services.galleries
    flight_id = uuid.UUID(world.flights["C"]["id"])
    dropped = reg._flights[flight_id]  # a search may still hold the gallery when the purge drops it
    dropped_gate = reg._purpose[DeviceKind.GATE][flight_id]  # and its gate's purpose gallery
    leaving = [p for p in world.passengers if p.flight == "C"]
    window = reg._windows[datetime.fromisoformat(world.flights["C"]["window_start"])]
    vectors = _vectors_of(window, [p.token_id for p in leaving])
    assert all(dropped.contains(p.token_id) for p in leaving)
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post(f"/v1/flights/{flight_id}/cancel")
        assert r.status_code == 200, r.text
    assert flight_id not in reg._flights
    assert nowhere([*every_gallery(world), dropped, dropped_gate], vectors) == {}
    for p in leaving:
        world.passengers.remove(p)


async def test_a_delayed_flight_leaves_no_face_in_its_old_window(world: LingerWorld) -> None:
    reg = world.svc.services.galleries
    old = datetime.fromisoformat(world.flights["B"]["window_start"])
    moving = [p for p in world.passengers if p.flight == "B"]
    vectors = _vectors_of(reg._windows[old], [p.token_id for p in moving])
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post(f"/v1/flights/{world.flights['B']['id']}/delay", json={"minutes": 240})
        assert r.status_code == 200, r.text
        new = datetime.fromisoformat(r.json()["window_start"])
    assert new != old
    assert nowhere([reg._windows[old], *(g for by_key in reg._purpose.values() if (g := by_key.get(old)))],
                   vectors) == {}
    # They moved, not vanished: the new window serves them, at the e-channel too.
    assert all(reg._windows[new].contains(p.token_id) for p in moving)
    assert all(reg._purpose[DeviceKind.E_CHANNEL][new].contains(p.token_id) for p in moving)


async def test_a_removed_watchlist_subject_leaves_no_face_in_memory(world: LingerWorld) -> None:
    async with world.svc.authority_client(world.keys["authority"]) as authority:
        r = await authority.post("/v1/watchlist/subjects", json=subject_body(world.watchlist_photos))
        assert r.status_code == 201, r.text
        subject_id = r.json()["id"]
        gallery = world.svc.services.watchlist.gallery._gallery
        ids = [k for k in gallery.ids() if k.startswith(subject_id)]
        assert ids
        vectors = {k: gallery.vector(k) for k in ids}
        assert all("exact store" in where_held(gallery, v) for v in vectors.values())
        r = await authority.post(f"/v1/watchlist/subjects/{subject_id}/remove", json={"removed_by": "Insp. Wong"})
        assert r.status_code == 200, r.text
    assert nowhere(every_gallery(world), vectors) == {}


async def test_the_remaining_passengers_still_match_after_the_removals(world: LingerWorld) -> None:
    remaining = [p for p in world.passengers if p.flight == "A"]
    async with world.svc.client(world.keys["e_channel"]) as e_channel:
        decisions = await gather_limited([j.identify(e_channel, p.seen_photo) for p in remaining])
    proceeded = [(p, d) for p, d in zip(remaining, decisions, strict=True) if d["decision"] == "proceed"]
    assert all(d["token_id"] == p.token_id for p, d in proceeded), "never a wrong-person accept"
    assert len(proceeded) >= len(remaining) // 2, [d["reason"] for d in decisions]
