"""The gallery: scores always exact, recall against brute force, replace and remove, verification
of weak graph results, search without waiting, and thread safety under concurrent reads and writes.

Graphs are built on one thread: a multi-threaded hnswlib build differs from run to run, and a test
comparing graph results with brute force must see the same graph every time."""

from __future__ import annotations

import random
import threading
from typing import Any

import numpy as np
import pytest

from flighttoken.galleries import Gallery, IndexParams
from tests.galleries.vectors import TOL, brute, make_ids, near, random_unit

# ---- recall against brute force (HNSW path) ------------------------------------------------------


N_RECALL = 5000


@pytest.fixture(scope="module")
def recall_set() -> tuple[list[str], np.ndarray, Gallery]:
    rng = np.random.default_rng(42)
    ids = make_ids(N_RECALL)
    matrix = random_unit(rng, N_RECALL)
    # exact_max=0: this is about hnswlib's short list + re-rank, not the exhaustive path.
    gallery = Gallery.build(zip(ids, matrix, strict=True), IndexParams(exact_max=0, build_threads=1))
    return ids, matrix, gallery


def test_recall_at_1_is_perfect_for_genuine_probes(recall_set: tuple[list[str], np.ndarray, Gallery]) -> None:
    ids, matrix, gallery = recall_set
    probes = near(np.random.default_rng(7), matrix[:1000])
    for q in probes:
        got = gallery.search(q, k=1)
        want = brute(ids, matrix, q, 1)
        assert len(got) == 1
        assert got[0].id == want[0][0]
        assert got[0].score == pytest.approx(want[0][1], abs=TOL)


def test_k2_scores_are_exact_and_top1_matches_brute_force(
    recall_set: tuple[list[str], np.ndarray, Gallery],
) -> None:
    ids, matrix, gallery = recall_set
    row_of = {id_: i for i, id_ in enumerate(ids)}
    probes = near(np.random.default_rng(8), matrix[1000:1500])
    for q in probes:
        got = gallery.search(q, k=2)
        want = brute(ids, matrix, q, 2)
        assert len(got) == 2 and got[0].id != got[1].id
        assert got[0].score >= got[1].score
        for c in got:  # every returned score is the exact cosine of that template
            assert c.score == pytest.approx(float(matrix[row_of[c.id]] @ q), abs=TOL)
        assert (got[0].id, got[0].score) == (want[0][0], pytest.approx(want[0][1], abs=TOL))
        # The runner-up here is a random impostor in a near-tie with thousands of others, so HNSW
        # may propose a slightly worse one; it can never report a better-than-true score.
        assert got[1].score <= want[1][1] + TOL


def test_k2_finds_a_lookalike_runner_up_like_brute_force() -> None:
    """The runner-up that matters for a doubtful-match check is a lookalike close to the probe;
    that one must be found and scored exactly."""
    rng = np.random.default_rng(9)
    base = random_unit(rng, N_RECALL)
    twins = near(rng, base[:300], noise=1.0)  # lookalikes of the first 300 faces
    ids = make_ids(N_RECALL + 300)
    matrix = np.vstack([base, twins])
    gallery = Gallery.build(zip(ids, matrix, strict=True), IndexParams(exact_max=0, build_threads=1))
    for q in near(rng, base[:300], noise=0.7):
        got = [(c.id, c.score) for c in gallery.search(q, k=2)]
        want = brute(ids, matrix, q, 2)
        assert [i for i, _ in got] == [i for i, _ in want]
        assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=TOL)


def test_exhaustive_path_matches_brute_force_exactly_for_k2() -> None:
    """A flight-sized gallery (<= exact_max) is searched exhaustively: top-k equals brute force."""
    rng = np.random.default_rng(10)
    ids, matrix = make_ids(420), random_unit(rng, 420)
    gallery = Gallery.build(zip(ids, matrix, strict=True))
    for q in np.vstack([near(rng, matrix[:100]), random_unit(rng, 100)]):
        got = gallery.search(q, k=2)
        want = brute(ids, matrix, q, 2)
        assert [c.id for c in got] == [i for i, _ in want]
        assert [c.score for c in got] == pytest.approx([s for _, s in want], abs=TOL)


# ---- replace, remove, resize, small galleries ----------------------------------------------------


@pytest.mark.parametrize("exact_max", [0, 1024])
def test_replace_keeps_one_live_entry_per_id(exact_max: int) -> None:
    rng = np.random.default_rng(11)
    others = random_unit(rng, 50)
    v1, v2 = random_unit(rng, 2)
    gallery = Gallery(IndexParams(build_threads=1, exact_max=exact_max))
    gallery.add([(f"o{i}", v) for i, v in enumerate(others)])
    gallery.add([("a", v1)])
    gallery.add([("a", v2)])
    gallery.add([("b", v1), ("b", v2)])  # a repeated id within one batch keeps the last
    assert len(gallery) == 52
    assert sorted(i for i in gallery.ids() if not i.startswith("o")) == ["a", "b"]
    assert gallery.deleted_count == 1
    np.testing.assert_allclose(gallery.vector("a"), v2, atol=1e-6)
    np.testing.assert_allclose(gallery.vector("b"), v2, atol=1e-6)
    hits = gallery.search(v2, k=5)
    assert [c.id for c in hits].count("a") == 1
    assert {c.id for c in hits[:2]} == {"a", "b"}
    assert hits[0].score == pytest.approx(1.0, abs=TOL)
    # The old template no longer matches itself at 1.0: only the new one is live.
    for c in gallery.search(v1, k=52):
        if c.id in ("a", "b"):
            assert c.score == pytest.approx(float(v1 @ v2), abs=TOL)


@pytest.mark.parametrize("exact_max", [0, 1024])
def test_removed_ids_are_never_returned(exact_max: int) -> None:
    rng = np.random.default_rng(12)
    ids, matrix = make_ids(2000), random_unit(rng, 2000)
    gallery = Gallery.build(zip(ids, matrix, strict=True), IndexParams(build_threads=1, exact_max=exact_max))
    gone = set(ids[::4])
    gallery.remove(sorted(gone))
    gallery.remove(["never-added", ids[0]])  # unknown and already removed: no-ops
    gallery.remove(ids[0])  # a bare str is one id, not its characters
    assert len(gallery) == 1500 and gallery.deleted_count == 500
    assert not any(gallery.contains(i) for i in gone)
    for i, q in enumerate(matrix[:400]):
        hits = gallery.search(q, k=10)
        assert len(hits) == 10
        assert not {c.id for c in hits} & gone
        if ids[i] not in gone:
            assert hits[0].id == ids[i]
    with pytest.raises(KeyError):
        gallery.vector(ids[0])


def test_resize_past_initial_capacity() -> None:
    rng = np.random.default_rng(13)
    ids, matrix = make_ids(700), random_unit(rng, 700)
    gallery = Gallery(IndexParams(build_threads=1, exact_max=0), capacity=64)
    assert gallery.capacity == 64
    gallery.add(list(zip(ids[:500], matrix[:500], strict=True)))  # one batch well past capacity
    for item in zip(ids[500:], matrix[500:], strict=True):  # and one at a time
        gallery.add([item])
    gallery.add([(ids[3], matrix[3])])  # a replacement uses a fresh label too
    assert len(gallery) == 700
    assert gallery.capacity >= 701
    for i in range(0, 700, 7):
        top = gallery.search(matrix[i], k=1)[0]
        assert top.id == ids[i] and top.score == pytest.approx(1.0, abs=TOL)


@pytest.mark.parametrize("exact_max", [0, 1024])
def test_empty_and_one_item_galleries(exact_max: int) -> None:
    rng = np.random.default_rng(14)
    v, q = random_unit(rng, 2)
    gallery = Gallery(IndexParams(build_threads=1, exact_max=exact_max))
    assert gallery.search(q, k=2) == [] and len(gallery) == 0 and gallery.ids() == []
    gallery.add([("only", v)])
    assert [(c.id, c.score) for c in gallery.search(q, k=2)] == [("only", pytest.approx(float(v @ q), abs=TOL))]
    gallery.remove(["only"])
    assert gallery.search(q, k=2) == []
    assert Gallery.build([], IndexParams(build_threads=1, exact_max=exact_max)).search(q) == []
    with pytest.raises(ValueError):
        gallery.search(q, k=0)


# ---- build -------------------------------------------------------------------------------------


def test_build_is_equivalent_to_incremental_adds() -> None:
    rng = np.random.default_rng(19)
    ids, matrix = make_ids(1500), random_unit(rng, 1500)
    items = list(zip(ids, matrix, strict=True))
    replaced = random_unit(rng, 10)
    # build sees the replacements as repeated ids (last wins); incremental sees them as re-adds.
    # Random unit vectors have no principal directions: a graph on a projection of them is a poor
    # one, and two such graphs may disagree. On the full vectors both find every near probe.
    params = IndexParams(exact_max=0, graph_dim=512, build_threads=1)
    built = Gallery.build(items + list(zip(ids[:10], replaced, strict=True)), params)
    incremental = Gallery(params, capacity=64)
    for start in range(0, 1500, 100):
        incremental.add(items[start : start + 100])
    incremental.add(list(zip(ids[:10], replaced, strict=True)))

    assert len(built) == len(incremental) == 1500
    assert sorted(built.ids()) == sorted(incremental.ids())
    for i in (0, 5, 9, 10, 777, 1499):
        np.testing.assert_allclose(built.vector(ids[i]), incremental.vector(ids[i]), rtol=0, atol=1e-7)
    for q in near(rng, np.vstack([matrix[10:300], replaced])):
        a, b = built.search(q, k=1)[0], incremental.search(q, k=1)[0]
        assert a.id == b.id and a.score == pytest.approx(b.score, abs=1e-6)


class _BlindIndex:
    """A graph that always proposes the same labels, whatever the query: a worst-case miss."""

    def __init__(self, real: Any, labels: list[int]) -> None:
        self._real, self._labels = real, labels

    def knn_query(self, data: Any, k: int = 1, **kwargs: Any) -> Any:
        return np.array([self._labels[:k]], dtype=np.uint64), np.zeros((1, k), dtype=np.float32)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.parametrize("verify_below", [None, 0.5])
def test_weak_graph_results_are_verified_exhaustively(verify_below: float | None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(35)
    ids, matrix = make_ids(2000), random_unit(rng, 2000)
    gallery = Gallery.build(zip(ids, matrix, strict=True),
                            IndexParams(build_threads=1, exact_max=0, rerank_k=8, verify_below=verify_below))
    assert gallery._graph is not None
    # A test double where an hnswlib.Index goes.
    gallery._graph.shards[0] = _BlindIndex(gallery._graph.shards[0], list(range(8)))  # pyright: ignore[reportArgumentType, reportCallIssue]
    exhaustive = []
    real = gallery._store.search
    monkeypatch.setattr(gallery._store, "search", lambda *a: exhaustive.append(1) or real(*a))

    hidden = near(rng, matrix[1500:1501])[0]  # the graph never proposes face 1500
    got = gallery.search(hidden, k=2)
    if verify_below is None:
        assert got[0].id != ids[1500]  # what an unverified miss looks like
    else:
        assert [c.id for c in got] == [i for i, _ in brute(ids, matrix, hidden, 2)]
        assert got[0].score == pytest.approx(float(matrix[1500] @ hidden), abs=TOL)
        assert gallery.verifications == 1
    before = len(exhaustive)
    strong = gallery.search(near(rng, matrix[5:6])[0], k=2)  # proposed, and well above 0.5
    assert strong[0].id == ids[5] and strong[0].score > 0.5
    assert len(exhaustive) == before  # a strong result is not re-checked


class _BlindOnce(_BlindIndex):
    """Proposes fixed labels to the first query (the probe), then searches for real."""

    def knn_query(self, data: Any, k: int = 1, **kwargs: Any) -> Any:
        if self._labels:
            found = super().knn_query(data, k)
            self._labels = []
            return found
        return self._real.knn_query(data, k=k, **kwargs)


@pytest.mark.parametrize("best_neighbours", [False, True])
def test_a_runner_up_within_the_margin_is_found_among_the_best_faces_neighbours(best_neighbours: bool) -> None:
    rng = np.random.default_rng(36)
    ids, matrix = make_ids(2000), random_unit(rng, 2000)
    probe = random_unit(rng, 1)
    matrix[5], matrix[1500] = near(rng, probe)[0], near(rng, probe)[0]  # one person enrolled twice
    gallery = Gallery.build(zip(ids, matrix, strict=True), IndexParams(
        build_threads=1, exact_max=0, rerank_k=8, verify_below=0.37, best_neighbours=best_neighbours))
    assert gallery._graph is not None
    # The probe's graph search finds face 5 but lacks its edge to face 1500.
    gallery._graph.shards[0] = _BlindOnce(gallery._graph.shards[0], [5, *range(10, 17)])  # pyright: ignore[reportArgumentType, reportCallIssue]
    want = brute(ids, matrix, probe[0], 2)
    assert {i for i, _ in want} == {ids[5], ids[1500]} and abs(want[0][1] - want[1][1]) < 0.08  # a doubtful match
    got = gallery.search(probe[0], k=2)
    assert gallery.verifications == 0  # strong: no exhaustive pass
    if best_neighbours:
        assert [(c.id, c.score) for c in got] == [(i, pytest.approx(sc, abs=TOL)) for i, sc in want]
    else:
        assert ids[1500] not in {c.id for c in got}  # the miss that would turn a refer into a proceed


def test_a_copy_is_independent_and_searches_like_brute_force() -> None:
    rng = np.random.default_rng(37)
    ids, matrix = make_ids(1500), random_unit(rng, 1500)
    params = IndexParams(build_threads=1, exact_max=100, shard_size=1024)
    original = Gallery.build(zip(ids, matrix, strict=True), params)
    copy = original.copy()
    assert copy.graph_shards == original.graph_shards == 2 and sorted(copy.ids()) == sorted(ids)
    copy.remove(ids[:300])
    original.add([("new", matrix[0])])
    assert len(original) == 1501 and len(copy) == 1200 and "new" not in copy and ids[0] in original
    for q in near(rng, matrix[::50]):
        assert original.search(q, k=1)[0].id == brute(ids, matrix, q, 1)[0][0]
        live = ids[300:]
        assert copy.search(q, k=1)[0].id == brute(live, matrix[300:], q, 1)[0][0]
    # Removing from the copy wiped the copy's rows only.
    assert float(np.linalg.norm(original.vector(ids[0]))) == pytest.approx(1.0, abs=TOL)


# ---- concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize(("exact_max", "shard_size"), [(0, 4096), (0, 128), (100_000, 4096), (600, 128)])
def test_concurrent_searches_during_adds_and_removes(exact_max: int, shard_size: int) -> None:
    """(600, 128): the graph appears mid-run, built by an add while searches wait, and new shards
    keep appearing after it."""
    rng = np.random.default_rng(20)
    ids = make_ids(1500)
    vectors = dict(zip(ids, random_unit(rng, 1500), strict=True))
    replacement = dict(zip(ids[:100], random_unit(rng, 100), strict=True))
    preload, later = ids[:400], ids[400:]
    # Small capacity, so the writer forces resizes.
    params = IndexParams(build_threads=1, exact_max=exact_max, shard_size=shard_size, rerank_k=10)
    gallery = Gallery(params, capacity=64)
    gallery.add([(i, vectors[i]) for i in preload])

    # Append-only logs: list.append is atomic, and a reader snapshots a prefix by its length.
    submitted: list[str] = list(preload)  # ids handed to add() (before it returns)
    removed: list[str] = []  # ids whose remove() has returned; never re-added in this test
    errors: list[BaseException] = []
    writer_done = threading.Event()

    def writer() -> None:
        try:
            wr = random.Random(1)
            live = list(preload)
            for start in range(0, len(later), 10):
                batch = later[start : start + 10]
                submitted.extend(batch)
                gallery.add([(i, vectors[i]) for i in batch])
                live.extend(batch)
                for victim in wr.sample(live, 4):
                    live.remove(victim)
                    gallery.remove([victim])
                    removed.append(victim)
                keep = [i for i in live if i in replacement][:2]
                gallery.add([(i, replacement[i]) for i in keep])
        except BaseException as exc:
            errors.append(exc)
        finally:
            writer_done.set()

    def reader(seed: int) -> None:
        try:
            rr = np.random.default_rng(seed)
            while not writer_done.is_set():
                removed_before = set(removed[: len(removed)])
                q = near(rr, vectors[ids[int(rr.integers(0, len(submitted)))]][None, :])[0]
                hits = gallery.search(q, k=3)
                known = set(submitted[: len(submitted)])
                assert hits, "the gallery is never empty in this test"
                for c in hits:
                    assert c.id in known, "returned an id that was never added"
                    assert c.id not in removed_before, "returned an id removed before the search"
                    exact = [float(vectors[c.id] @ q)]
                    if c.id in replacement:
                        exact.append(float(replacement[c.id] @ q))
                    assert min(abs(c.score - s) for s in exact) <= TOL, "score is not exact"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    assert len(gallery) == 1500 - len(removed)
    assert set(gallery.ids()) == set(ids) - set(removed)
    assert gallery.capacity > 64
    assert (gallery.graph_shards > 0) == (exact_max < 1500)


def test_search_now_answers_small_galleries_without_waiting() -> None:
    rng = np.random.default_rng(40)
    ids, matrix = make_ids(300), random_unit(rng, 300)
    gallery = Gallery.build(zip(ids, matrix, strict=True), IndexParams(build_threads=1, exact_max=200, rerank_k=8))
    small = Gallery.build(zip(ids[:200], matrix[:200], strict=True), IndexParams(build_threads=1, exact_max=200))
    q = near(rng, matrix[7:8])[0]
    assert gallery.search_now(q, k=2) is None  # past exact_max: a graph search, not for an event loop
    now, later = small.search_now(q, k=2), small.search(q, k=2)
    assert now is not None  # within exact_max: answered now
    assert [c.id for c in now] == [c.id for c in later]
    assert [c.score for c in now] == pytest.approx([c.score for c in later], abs=1e-6)
    again = small.search_now(q, k=2)
    assert again is not None and again[0].id == ids[7]
    with small._lock.write():  # a write in progress: give up rather than wait
        assert small.search_now(q, k=2) is None
    with pytest.raises(ValueError):
        small.search_now(q, k=0)

