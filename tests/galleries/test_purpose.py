"""Purpose-bound galleries (issue 19): the membership rules of the policy table, and the registry
moving a token between purpose galleries as its standing changes, from memory, wiping what it leaves."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from flighttoken.decisions.policy import TOUCHPOINTS, Standing
from flighttoken.galleries.graph import Graph
from flighttoken.galleries.index import Gallery
from flighttoken.galleries.params import GalleryParams
from flighttoken.galleries.purpose import build_purpose_galleries, places
from flighttoken.galleries.registry import GalleryRegistry
from flighttoken.vocabulary import DeviceKind, TokenState

E, L, G = DeviceKind.E_CHANNEL, DeviceKind.LOUNGE, DeviceKind.GATE
B, S = DeviceKind.BAG_DROP, DeviceKind.E_SECURITY_GATE
ENROLLED, CLEARED, BOARDED = TokenState.ENROLLED, TokenState.IMMIGRATION_CLEARED, TokenState.BOARDED
WINDOW = datetime(2026, 11, 23, 8, tzinfo=UTC)
FLIGHT = uuid.uuid4()


def admitted(state: TokenState, international: bool, lounge: bool) -> set[DeviceKind]:
    return {kind for kind, policy in TOUCHPOINTS.items() if policy.admits(Standing(state, international, lounge))}


@pytest.mark.parametrize(("state", "international", "lounge", "expected"), [
    # Not yet cleared: security, the e-channel, and the gate (to be told to clear); bag drop until boarded.
    (ENROLLED, True, True, {S, E, G, B}),
    (ENROLLED, True, False, {S, E, G, B}),
    (CLEARED, True, True, {L, G, B}),  # airside already: no security gate
    (CLEARED, True, False, {G, B}),
    (ENROLLED, False, True, {S, L, G, B}),  # domestic: no immigration, straight to the lounge
    (ENROLLED, False, False, {S, G, B}),
    (BOARDED, True, True, set()),  # boarded: only the misuse search still finds them
    (BOARDED, False, True, set()),
])
def test_membership_follows_state_international_and_lounge_eligibility(state, international, lounge,
                                                                       expected) -> None:
    assert admitted(state, international, lounge) == expected


def test_every_touchpoint_has_a_membership_rule_and_ended_tokens_are_in_none() -> None:
    for state, international, lounge in itertools.product(TokenState, (True, False), (True, False)):
        found = admitted(state, international, lounge)
        if state in (TokenState.REVOKED, TokenState.EXPIRED):
            assert found == set()
    assert all(callable(p.admits) for p in TOUCHPOINTS.values())


def test_places_key_gates_by_flight_and_the_rest_by_window() -> None:
    assert places((FLIGHT, WINDOW), Standing(ENROLLED, True, True)) == {(E, WINDOW), (G, FLIGHT), (B, WINDOW),
                                                                        (S, WINDOW)}
    assert places((FLIGHT, WINDOW), None) == set()


def _vectors(n: int, seed: int = 3) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, 512))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


async def test_restate_moves_a_token_from_memory_and_wipes_the_gallery_it_leaves() -> None:
    reg = GalleryRegistry(GalleryParams(exact_max=8))
    vectors = _vectors(20)
    ids = [uuid.uuid4() for _ in vectors]
    for t, v in zip(ids, vectors, strict=True):
        await reg.add(t, FLIGHT, WINDOW, v, Standing(ENROLLED, True, True))
    assert reg.purpose_size(E, [WINDOW]) == 20 and reg.purpose_size(L, [WINDOW]) == 0
    e_channel = reg._purpose[E][WINDOW]
    row = e_channel._store.id_labels[str(ids[0])]

    assert await reg.restate(ids[0], Standing(CLEARED, True, True))
    assert reg.purposes(ids[0]) == {L, G, B}
    assert reg.purpose_size(E, [WINDOW]) == 19
    assert not np.any(e_channel._store.vectors[row]), "a face that left must be overwritten"
    [hit] = await reg.search_purpose(L, [WINDOW], vectors[0], k=1)
    assert hit.id == str(ids[0]) and hit.score == pytest.approx(1.0, abs=1e-5)
    assert (await reg.search_purpose(E, [WINDOW], vectors[0], k=1))[0].id != str(ids[0])
    assert not await reg.restate(ids[0], Standing(CLEARED, True, True))  # nothing to move

    assert await reg.restate(ids[0], Standing(BOARDED, True, True))
    assert reg.purposes(ids[0]) == set() and L not in {k for k, by in reg._purpose.items() if by}
    assert reg.contains(ids[0]) and reg.window_size(WINDOW) == 20  # the wide galleries keep them


async def test_restate_leaves_a_newer_standing_alone_and_unknown_tokens_alone() -> None:
    reg = GalleryRegistry()
    t, v = uuid.uuid4(), _vectors(1)[0]
    assert not await reg.restate(t, Standing(CLEARED, True, True))  # not in memory
    await reg.add(t, FLIGHT, WINDOW, v, Standing(CLEARED, True, True))
    stale = Standing(ENROLLED, True, True)
    assert not await reg.restate(t, stale, unless_changed_from=stale)
    assert reg.purposes(t) == {L, G, B}


async def test_removal_flight_drops_and_window_moves_follow_purpose_galleries() -> None:
    reg = GalleryRegistry()
    vectors = _vectors(4)
    ids = [uuid.uuid4() for _ in vectors]
    other = uuid.uuid4()
    for t, v in zip(ids[:3], vectors[:3], strict=True):
        await reg.add(t, FLIGHT, WINDOW, v, Standing(ENROLLED, True, True))
    await reg.add(ids[3], other, WINDOW, vectors[3], Standing(ENROLLED, True, True))
    await reg.remove([ids[0]])
    assert reg.purpose_size(E, [WINDOW]) == 3 and reg.purpose_size(G, [FLIGHT]) == 2
    later = WINDOW + timedelta(hours=2)
    assert await reg.move_flight_window(FLIGHT, later) == 2
    assert (reg.purpose_size(E, [WINDOW]), reg.purpose_size(E, [later])) == (1, 2)
    gate = reg._purpose[G][FLIGHT]
    assert await reg.drop_flight(FLIGHT) == 2
    assert len(gate) == 0 and FLIGHT not in reg._purpose[G] and later not in reg._purpose[E]
    assert reg.sizes_by_kind() == {"flight": [1], "window": [1], "e_channel": [1], "lounge": [], "gate": [1],
                                   "bag_drop": [1], "e_security_gate": [1]}


def test_bulk_build_places_like_the_registry() -> None:
    vectors = _vectors(3)
    ids = [uuid.uuid4() for _ in vectors]
    standing = {str(ids[0]): Standing(ENROLLED, True, True), str(ids[1]): Standing(CLEARED, True, True)}
    built = build_purpose_galleries([(t, FLIGHT, WINDOW, v) for t, v in zip(ids, vectors, strict=True)], standing)
    assert built[E][WINDOW].ids() == [str(ids[0])]
    assert built[L][WINDOW].ids() == [str(ids[1])]
    assert sorted(built[G][FLIGHT].ids()) == sorted([str(ids[0]), str(ids[1])])  # ids[2]: no standing, none


def test_a_purpose_gallery_holding_most_of_a_wide_one_is_a_copy_not_a_second_graph(
        monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = _vectors(1200, seed=5)
    ids = [uuid.uuid4() for _ in vectors]
    rows = [(t, FLIGHT, WINDOW, v) for t, v in zip(ids, vectors, strict=True)]
    params = GalleryParams(exact_max=500, build_threads=1)
    window = Gallery.build([(str(t), v) for t, v in zip(ids, vectors, strict=True)], params)
    enrolled = Standing(ENROLLED, True, False)  # e-channel and gate
    standing = {str(t): enrolled for t in ids[:1000]} | {str(t): Standing(CLEARED, True, False) for t in ids[1000:]}
    builds = []
    real = Graph.build
    monkeypatch.setattr(Graph, "build", lambda *a, **k: builds.append(1) or real(*a, **k))
    built = build_purpose_galleries(rows, standing, params, {WINDOW: window})
    e_channel = built[E][WINDOW]
    assert builds == [1]  # the gate's flight gallery (no wide one given); the e-channel's is a copy
    assert e_channel is not window and sorted(e_channel.ids()) == sorted(str(t) for t in ids[:1000])
    assert len(window) == 1200 and e_channel.graph_shards == 1
    for i in (3, 999, 1100):  # a cleared passenger is not in the e-channel's gallery any more
        found = e_channel.search(vectors[i], k=1)[0]
        assert (found.id == str(ids[i])) == (i < 1000)
    # Fewer than SHARE_TO_COPY of the window's faces: built on its own.
    few = {str(t): enrolled for t in ids[:600]}
    builds.clear()
    assert sorted(build_purpose_galleries(rows, few, params, {WINDOW: window})[E][WINDOW].ids()) == sorted(few)
    # The gate's flight gallery, and the window galleries of the e-channel, the bag drop and the
    # e-Security Gate (each admits these enrolled passengers; the lounge admits none of them).
    assert len(builds) == 4
