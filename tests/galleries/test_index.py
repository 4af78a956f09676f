"""The in-memory face gallery: exactness of scores, recall against brute force, tombstones,
resizing, the hnswlib corner cases, and thread safety under concurrent reads and writes."""

from __future__ import annotations

import random
import threading
import uuid
from typing import Any

import numpy as np
import pytest

from flighttoken.galleries import Candidate, Gallery, exact_top_k
from flighttoken.galleries.index import _RWLock

DIM = 512
TOL = 1e-5


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def random_unit(rng: np.random.Generator, n: int) -> np.ndarray:
    return unit(rng.standard_normal((n, DIM)))


def near(rng: np.random.Generator, rows: np.ndarray, noise: float = 0.9) -> np.ndarray:
    """Another capture of the same faces: cosine ≈ 0.75 to ``rows`` (a typical genuine match),
    while unrelated random templates sit near 0."""
    return unit(rows + noise * rng.standard_normal(rows.shape).astype(np.float32) / np.sqrt(DIM))


def make_ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


def brute(ids: list[str], matrix: np.ndarray, q: np.ndarray, k: int) -> list[tuple[str, float]]:
    rows, scores = exact_top_k(matrix, q, k)
    return [(ids[r], float(s)) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]


# ---- exact_top_k ---------------------------------------------------------------------------------


def test_exact_top_k_orders_best_first_and_breaks_ties_by_row() -> None:
    m = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [1.0, 0.0]], dtype=np.float32)
    rows, scores = exact_top_k(m, np.array([1.0, 0.0], dtype=np.float32), 3)
    assert rows.tolist() == [1, 3, 2]
    assert scores.tolist() == pytest.approx([1.0, 1.0, 0.6])


def test_exact_top_k_k_beyond_rows_and_zero() -> None:
    m = random_unit(np.random.default_rng(1), 5)
    rows, scores = exact_top_k(m, m[2], 50)
    assert len(rows) == 5 and rows[0] == 2 and scores[0] == pytest.approx(1.0)
    assert list(scores) == sorted(scores, reverse=True)
    assert len(exact_top_k(m, m[0], 0)[0]) == 0
    assert len(exact_top_k(m[:0], m[0], 3)[0]) == 0


# ---- recall against brute force (HNSW path) ------------------------------------------------------

N_RECALL = 5000


@pytest.fixture(scope="module")
def recall_set() -> tuple[list[str], np.ndarray, Gallery]:
    rng = np.random.default_rng(42)
    ids = make_ids(N_RECALL)
    matrix = random_unit(rng, N_RECALL)
    # exact_max=0: this is about hnswlib's short list + re-rank, not the exhaustive path.
    gallery = Gallery.build(zip(ids, matrix, strict=True), exact_max=0, num_threads=1)
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
    gallery = Gallery.build(zip(ids, matrix, strict=True), exact_max=0)
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
    gallery = Gallery(exact_max=exact_max)
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
    gallery = Gallery.build(zip(ids, matrix, strict=True), exact_max=exact_max)
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
    gallery = Gallery(capacity=64, exact_max=0)
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
    gallery = Gallery(exact_max=exact_max)
    assert gallery.search(q, k=2) == [] and len(gallery) == 0 and gallery.ids() == []
    gallery.add([("only", v)])
    assert gallery.search(q, k=2) == [Candidate(id="only", score=pytest.approx(float(v @ q), abs=TOL))]
    gallery.remove(["only"])
    assert gallery.search(q, k=2) == []
    assert Gallery.build([], exact_max=exact_max).search(q) == []
    with pytest.raises(ValueError):
        gallery.search(q, k=0)


def test_fewer_live_items_than_hnsw_short_list() -> None:
    """hnswlib's knn_query raises when it cannot fill k; tombstones make that easy to hit."""
    rng = np.random.default_rng(15)
    ids, matrix = make_ids(100), random_unit(rng, 100)
    gallery = Gallery.build(zip(ids, matrix, strict=True), exact_max=0)
    gallery.remove(ids[:89])
    assert len(gallery) == 11  # just above rerank_k, so hnswlib is asked for 10 of 11
    for q in random_unit(rng, 20):
        got = gallery.search(q, k=2)
        want = brute(ids[89:], matrix[89:], q, 2)
        assert [c.id for c in got] == [i for i, _ in want]
    gallery.remove(ids[89:93])
    assert len(gallery.search(matrix[99], k=10)) == 7


class _RaisingIndex:
    """Stands in for hnswlib.Index when it cannot fill k (the real one does so unpredictably)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def knn_query(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Cannot return the results in a contiguous 2D array. Probably ef or M is too small")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.parametrize("failing_shard", [0, 2])
def test_hnswlib_failure_falls_back_to_exact_search_of_that_shard(failing_shard: int) -> None:
    rng = np.random.default_rng(16)
    ids, matrix = make_ids(300), random_unit(rng, 300)
    gallery = Gallery.build(zip(ids, matrix, strict=True), exact_max=0, shard_size=128)
    assert gallery.graph_shards == 3
    gallery.remove(ids[:50])
    shards = gallery._graph.shards
    shards[failing_shard] = _RaisingIndex(shards[failing_shard])
    # Probes near a face of the failing shard: only the fallback can find it.
    lo = max(failing_shard * 128, 50)
    for q in np.vstack([near(rng, matrix[lo : lo + 10]), random_unit(rng, 10)]):
        got = gallery.search(q, k=2)
        want = brute(ids[50:], matrix[50:], q, 2)
        assert [c.id for c in got] == [i for i, _ in want]
        assert [c.score for c in got] == pytest.approx([s for _, s in want], abs=TOL)


# ---- validation and normalisation ----------------------------------------------------------------


def test_bad_items_leave_the_gallery_untouched() -> None:
    rng = np.random.default_rng(17)
    good = random_unit(rng, 3)
    gallery = Gallery()
    gallery.add([("a", good[0])])
    bad_batches: list[list[tuple[Any, Any]]] = [
        [("b", good[1]), ("c", np.zeros(DIM, dtype=np.float32))],
        [("b", good[1]), ("c", np.full(DIM, np.nan, dtype=np.float32))],
        [("b", good[1]), ("c", good[2][:128])],
        [("b", good[1]), (uuid.uuid4(), good[2])],
    ]
    for batch in bad_batches:
        with pytest.raises((ValueError, TypeError)):
            gallery.add(batch)
    assert gallery.ids() == ["a"] and gallery.deleted_count == 0
    with pytest.raises(ValueError):
        gallery.search(good[0][:10])


@pytest.mark.parametrize("space", ["ip", "cosine"])
def test_scores_are_cosine_even_for_unnormalised_input(space: str) -> None:
    rng = np.random.default_rng(18)
    m = random_unit(rng, 30)
    gallery = Gallery(space=space, exact_max=0)  # type: ignore[arg-type]
    gallery.add([(f"f{i}", 3.0 * v) for i, v in enumerate(m)])
    np.testing.assert_allclose(gallery.vector("f4"), m[4], atol=1e-6)
    top = gallery.search(7.0 * m[4], k=1)[0]
    assert top.id == "f4" and top.score == pytest.approx(1.0, abs=TOL)


# ---- build -------------------------------------------------------------------------------------


def test_build_is_equivalent_to_incremental_adds() -> None:
    rng = np.random.default_rng(19)
    ids, matrix = make_ids(1500), random_unit(rng, 1500)
    items = list(zip(ids, matrix, strict=True))
    replaced = random_unit(rng, 10)
    # build sees the replacements as repeated ids (last wins); incremental sees them as re-adds.
    built = Gallery.build(items + list(zip(ids[:10], replaced, strict=True)), exact_max=0, num_threads=2)
    incremental = Gallery(capacity=64, exact_max=0)
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


# ---- the graph: lazy, sharded, projected, verified ---------------------------------------------


def faces_like(rng: np.random.Generator, n: int, rank: int = 48) -> np.ndarray:
    """Templates with the structure real ones have: most variance in a few directions."""
    basis = np.linalg.qr(rng.standard_normal((DIM, rank)))[0].T
    return unit(rng.standard_normal((n, rank)) @ basis + 0.3 * rng.standard_normal((n, DIM)) / np.sqrt(DIM))


def test_small_galleries_never_build_a_graph_and_grow_one_past_exact_max() -> None:
    rng = np.random.default_rng(30)
    ids, matrix = make_ids(700), random_unit(rng, 700)
    gallery = Gallery.build(zip(ids[:420], matrix[:420], strict=True), exact_max=500, shard_size=256)
    assert gallery.graph_shards == 0 and gallery.graph_dim is None
    gallery.add(list(zip(ids[420:500], matrix[420:500], strict=True)))
    assert gallery.graph_shards == 0  # exactly exact_max: still exhaustive
    gallery.add([(ids[500], matrix[500])])
    assert gallery.graph_shards == 2 and gallery.graph_dim == DIM  # 501 faces: too few to fit a projection
    for item in zip(ids[501:], matrix[501:], strict=True):
        gallery.add([item])
    assert gallery.graph_shards == 3
    probes = near(rng, matrix[::7])
    for q in probes:
        assert gallery.search(q, k=1)[0].id == brute(ids, matrix, q, 1)[0][0]
    gallery.remove(ids[:300])  # back under exact_max: exhaustive again
    for q in probes:
        got = gallery.search(q, k=2)
        assert [c.id for c in got] == [i for i, _ in brute(ids[300:], matrix[300:], q, 2)]


def test_sharded_graph_finds_what_brute_force_finds() -> None:
    rng = np.random.default_rng(31)
    ids, matrix = make_ids(3000), faces_like(rng, 3000)
    gallery = Gallery.build(zip(ids, matrix, strict=True), exact_max=0, shard_size=512, graph_dim=96,
                            num_threads=2)
    assert gallery.graph_shards == 6 and gallery.graph_dim == 96
    probes = near(rng, matrix[::10], noise=1.2)  # one probe per 10 faces, every shard
    for q in probes:
        got = gallery.search(q, k=2)
        want = brute(ids, matrix, q, 2)
        assert got[0].id == want[0][0]
        assert got[0].score == pytest.approx(want[0][1], abs=TOL)
    # Tombstones in several shards, and a replacement that lands in a new shard.
    gallery.remove(ids[100:3000:7])
    gallery.add([(ids[0], matrix[1])])
    assert gallery.graph_shards == 6 and gallery.deleted_count == len(ids[100:3000:7]) + 1
    keep = [i for i in range(3000) if i not in set(range(100, 3000, 7)) and i != 0]
    kept_ids, kept = [ids[i] for i in keep] + [ids[0]], np.vstack([matrix[keep], matrix[1:2]])
    for q in probes:
        got = gallery.search(q, k=2)
        assert got[0].id == brute(kept_ids, kept, q, 1)[0][0]


def test_a_shard_grows_as_faces_arrive_one_by_one() -> None:
    rng = np.random.default_rng(36)
    ids, matrix = make_ids(900), random_unit(rng, 900)
    gallery = Gallery(exact_max=0, shard_size=1000)
    for item in zip(ids, matrix, strict=True):
        gallery.add([item])
    index = gallery._graph.shards[0]
    assert gallery.graph_shards == 1 and 900 <= index.get_max_elements() <= 1000
    for q in near(rng, matrix[::9]):
        assert gallery.search(q, k=1)[0].id == brute(ids, matrix, q, 1)[0][0]


def test_projection_needs_enough_faces_and_a_smaller_dimension() -> None:
    rng = np.random.default_rng(32)
    m = random_unit(rng, 800)
    items = list(zip(make_ids(800), m, strict=True))
    assert Gallery.build(items, exact_max=0, graph_dim=192).graph_dim == 192  # 800 >= 4 x 192
    assert Gallery.build(items[:700], exact_max=0, graph_dim=192).graph_dim == DIM
    assert Gallery.build(items, exact_max=0, graph_dim=DIM).graph_dim == DIM


def test_a_failed_graph_build_leaves_the_gallery_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    from flighttoken.galleries import index

    rng = np.random.default_rng(33)
    ids, matrix = make_ids(40), random_unit(rng, 40)
    gallery = Gallery(exact_max=30)
    gallery.add(list(zip(ids[:30], matrix[:30], strict=True)))

    def fail(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("no room for the graph")

    monkeypatch.setattr(index._Graph, "insert", fail)
    with pytest.raises(MemoryError):
        gallery.add(list(zip(ids[30:], matrix[30:], strict=True)))
    assert sorted(gallery.ids()) == sorted(ids[:30]) and gallery.graph_dim is None  # no graph at all
    assert gallery.search(matrix[3], k=1)[0].id == ids[3]
    monkeypatch.undo()
    gallery.add(list(zip(ids[30:], matrix[30:], strict=True)))
    assert len(gallery) == 40 and gallery.graph_shards == 1
    for i in (3, 35):  # the graph holds the old faces and the new ones
        assert gallery.search(matrix[i], k=1)[0].id == ids[i]


def test_the_graph_built_by_an_add_holds_only_live_faces() -> None:
    """The add that crosses exact_max also replaces an id: the old vector must not be in the graph."""
    rng = np.random.default_rng(34)
    ids, matrix = make_ids(16), random_unit(rng, 17)
    gallery = Gallery(exact_max=10, rerank_k=2)
    gallery.add(list(zip(ids[:10], matrix[:10], strict=True)))
    gallery.add([(ids[0], matrix[16]), *zip(ids[10:], matrix[10:16], strict=True)])
    assert len(gallery) == 16 and gallery.deleted_count == 1 and gallery.graph_shards == 1
    assert sum(gallery._graph.live) == 16
    hits = gallery.search(matrix[0], k=14)  # graph path: 14 < live, and each shard asked for 14
    assert len(hits) == 14 and len({c.id for c in hits}) == 14
    assert all(c.score < 0.99 for c in hits)  # the replaced vector is gone everywhere


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
    gallery = Gallery.build(zip(ids, matrix, strict=True), exact_max=0, rerank_k=8, verify_below=verify_below)
    gallery._graph.shards[0] = _BlindIndex(gallery._graph.shards[0], list(range(8)))
    exhaustive = []
    real = gallery._exact_search
    monkeypatch.setattr(gallery, "_exact_search", lambda *a: exhaustive.append(1) or real(*a))

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
    gallery = Gallery(capacity=64, exact_max=exact_max, shard_size=shard_size, rerank_k=10)
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


# ---- the readers-writer lock -------------------------------------------------------------------


def test_rwlock_readers_share_and_writers_exclude() -> None:
    lock = _RWLock()
    state = {"readers": 0, "writers": 0}
    guard = threading.Lock()
    violations: list[str] = []
    inside_together = threading.Barrier(3, timeout=30)  # a deadlock guard, not a timing check

    def check(kind: str) -> None:
        with guard:
            if kind == "w" and (state["readers"] or state["writers"] != 1):
                violations.append(f"writer with {state}")
            if kind == "r" and state["writers"]:
                violations.append(f"reader with {state}")

    def enter(key: str, delta: int) -> None:
        with guard:
            state[key] += delta

    def co_reader() -> None:  # three readers must all be inside at once to pass the barrier
        with lock.read():
            inside_together.wait()

    def worker(seed: int) -> None:
        r = random.Random(seed)
        for _ in range(300):
            if r.random() < 0.2:
                with lock.write():
                    enter("writers", 1)
                    check("w")
                    enter("writers", -1)
            else:
                with lock.read():
                    enter("readers", 1)
                    check("r")
                    enter("readers", -1)

    shared = [threading.Thread(target=co_reader) for _ in range(3)]
    mixed = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for t in shared + mixed:
        t.start()
    for t in shared + mixed:
        t.join()
    assert not violations


def test_rwlock_waiting_writer_goes_before_new_readers() -> None:
    lock = _RWLock()
    order: list[str] = []
    release_first = threading.Event()
    first_in = threading.Event()

    def first_reader() -> None:
        with lock.read():
            first_in.set()
            release_first.wait()

    def writer() -> None:
        with lock.write():
            order.append("writer")

    def late_reader() -> None:
        with lock.read():
            order.append("late reader")

    t1 = threading.Thread(target=first_reader)
    t1.start()
    first_in.wait()
    tw = threading.Thread(target=writer)
    tw.start()
    while lock._writers_waiting == 0:  # the writer is queued behind the first reader
        threading.Event().wait(0.001)
    t2 = threading.Thread(target=late_reader)
    t2.start()
    release_first.set()
    for t in (t1, tw, t2):
        t.join()
    assert order == ["writer", "late reader"]


def test_try_read_never_waits_for_a_writer() -> None:
    lock = _RWLock()
    with lock.try_read() as first, lock.try_read() as second:
        assert first and second  # readers share
    with lock.write(), lock.try_read() as acquired:
        assert not acquired
    with lock.try_read() as acquired:
        assert acquired  # and a refused attempt left nothing behind


def test_search_now_answers_small_galleries_without_waiting() -> None:
    rng = np.random.default_rng(40)
    ids, matrix = make_ids(300), random_unit(rng, 300)
    gallery = Gallery.build(zip(ids, matrix, strict=True), exact_max=200, rerank_k=8)
    small = Gallery.build(zip(ids[:200], matrix[:200], strict=True), exact_max=200)
    q = near(rng, matrix[7:8])[0]
    assert gallery.search_now(q, k=2) is None  # past exact_max: a graph search, not for an event loop
    now, later = small.search_now(q, k=2), small.search(q, k=2)
    assert [c.id for c in now] == [c.id for c in later]
    assert [c.score for c in now] == pytest.approx([c.score for c in later], abs=1e-6)
    assert small.search_now(q, k=2)[0].id == ids[7]
    with small._lock.write():  # a write in progress: give up rather than wait
        assert small.search_now(q, k=2) is None
    with pytest.raises(ValueError):
        small.search_now(q, k=0)


def test_a_gallery_of_mostly_departed_faces_searches_only_the_live_ones() -> None:
    # A departure window after its early flights left: most slots are tombstones, and the
    # exhaustive search copies out the live rows instead of scoring every slot.
    rng = np.random.default_rng(21)
    ids, matrix = make_ids(900), random_unit(rng, 900)
    gallery = Gallery.build(zip(ids, matrix, strict=True), exact_max=1024)
    keep = set(ids[::7])
    gallery.remove([i for i in ids if i not in keep])
    live_ids = [i for i in ids if i in keep]
    live = matrix[::7]
    assert len(gallery) == len(live_ids) == 129 and gallery.deleted_count == 771
    for q in [*near(rng, live[:40]), *random_unit(rng, 10)]:
        for k in (1, 2, len(live_ids), len(live_ids) + 5):
            got = gallery.search(q, k=k)
            want = brute(live_ids, live, q, k)
            assert [c.id for c in got] == [i for i, _ in want]
            assert [c.score for c in got] == pytest.approx([s for _, s in want], abs=TOL)


def _graph_vectors(g: Gallery) -> np.ndarray:
    """Every vector hnswlib stores, tombstones included (read from its serialised state)."""
    assert g._graph is not None
    parts = []
    for index in g._graph.shards:
        st = index.__getstate__()[0]
        rows = st["data_level0"].reshape(-1, st["size_data_per_element"])[: st["cur_element_count"]]
        parts.append(np.ascontiguousarray(rows[:, st["offset_data"]: st["offset_data"] + g._graph.dim * 4]))
    return np.concatenate(parts).view(np.float32)


@pytest.mark.parametrize("removed", [1, 600], ids=["one_in_place", "many_by_shard_rewrite"])
def test_removal_overwrites_the_vector_in_the_exact_store_and_the_graph(removed: int) -> None:
    rng = np.random.default_rng(11)
    ids, matrix = make_ids(3000), faces_like(rng, 3000)
    g = Gallery.build(zip(ids, matrix, strict=True), exact_max=64, graph_dim=64, num_threads=2)
    assert g.graph_dim == 64  # projected
    probes = near(rng, matrix)
    before = [g.search(q, k=2) for q in probes[removed:]]
    g.remove(ids[:removed])
    projected = g._graph.project(matrix[:removed])
    stored = _graph_vectors(g)
    for v, p in zip(matrix[:removed], projected, strict=True):
        assert np.min(np.linalg.norm(g._vectors - v, axis=1)) > 0.5
        assert np.min(np.linalg.norm(stored - p, axis=1)) > 0.01 * np.linalg.norm(p)
    assert len(g) == 3000 - removed and g.deleted_count == removed
    # The others are found as before, and a removed id never comes back.
    after = [g.search(q, k=2) for q in probes[removed:]]
    assert [r[0].id for r in after] == [r[0].id for r in before]
    assert not {c.id for q in probes[:removed] for c in g.search(q, k=2)} & set(ids[:removed])
