"""The hnswlib graph: lazy, sharded, projected; its corner cases (short lists it cannot fill, a
failed build) and removal overwriting the stored vector in place or by rewriting the shard."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from flighttoken.galleries import Gallery, IndexParams
from flighttoken.galleries.graph import Graph, by_shard, fit_basis
from tests.galleries.vectors import DIM, TOL, brute, faces_like, make_ids, near, random_unit

# ---- what hnswlib cannot do ---------------------------------------------------------------------


def test_fewer_live_items_than_hnsw_short_list() -> None:
    """hnswlib's knn_query raises when it cannot fill k; tombstones make that easy to hit."""
    rng = np.random.default_rng(15)
    ids, matrix = make_ids(100), random_unit(rng, 100)
    gallery = Gallery.build(zip(ids, matrix, strict=True), IndexParams(build_threads=1, exact_max=0))
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
    gallery = Gallery.build(zip(ids, matrix, strict=True), IndexParams(build_threads=1, exact_max=0, shard_size=128))
    assert gallery.graph_shards == 3
    gallery.remove(ids[:50])
    assert gallery._graph is not None
    shards = gallery._graph.shards
    # A test double where an hnswlib.Index goes.
    shards[failing_shard] = _RaisingIndex(shards[failing_shard])  # pyright: ignore[reportArgumentType, reportCallIssue]
    # Probes near a face of the failing shard: only the fallback can find it.
    lo = max(failing_shard * 128, 50)
    for q in np.vstack([near(rng, matrix[lo : lo + 10]), random_unit(rng, 10)]):
        got = gallery.search(q, k=2)
        want = brute(ids[50:], matrix[50:], q, 2)
        assert [c.id for c in got] == [i for i, _ in want]
        assert [c.score for c in got] == pytest.approx([s for _, s in want], abs=TOL)


# ---- lazy, sharded, projected -------------------------------------------------------------------


def test_labels_fill_shards_in_order() -> None:
    labels = np.array([3, 4, 130, 131, 300], dtype=np.int64)
    assert [(s, rows.tolist()) for s, rows in by_shard(labels, 128)] == [(0, [0, 1]), (1, [2, 3]), (2, [4])]


def test_the_projection_keeps_the_strongest_directions() -> None:
    rng = np.random.default_rng(37)
    matrix = faces_like(rng, 1000, rank=16)
    basis = fit_basis(matrix, 32)
    assert basis is not None and basis.shape == (DIM, 32)
    np.testing.assert_allclose(basis.T @ basis, np.eye(32), atol=1e-4)  # orthonormal directions
    kept = np.linalg.norm(matrix @ basis, axis=1)
    assert float(np.min(kept)) > 0.9  # rank-16 faces plus noise: nearly all of each inside 32 directions
    assert fit_basis(matrix[:100], 32) is None and fit_basis(matrix, DIM) is None  # too few; no smaller


def test_small_galleries_never_build_a_graph_and_grow_one_past_exact_max() -> None:
    rng = np.random.default_rng(30)
    ids, matrix = make_ids(700), random_unit(rng, 700)
    params = IndexParams(build_threads=1, exact_max=500, shard_size=256, graph_dim=192)
    gallery = Gallery.build(zip(ids[:420], matrix[:420], strict=True), params)
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
    gallery = Gallery.build(zip(ids, matrix, strict=True),
                            IndexParams(exact_max=0, shard_size=512, graph_dim=96, build_threads=2))
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
    gallery = Gallery(IndexParams(build_threads=1, exact_max=0, shard_size=1000))
    for item in zip(ids, matrix, strict=True):
        gallery.add([item])
    assert gallery._graph is not None
    index = gallery._graph.shards[0]
    assert index is not None
    assert gallery.graph_shards == 1 and 900 <= index.get_max_elements() <= 1000
    for q in near(rng, matrix[::9]):
        assert gallery.search(q, k=1)[0].id == brute(ids, matrix, q, 1)[0][0]


def test_projection_needs_enough_faces_and_a_smaller_dimension() -> None:
    rng = np.random.default_rng(32)
    m = random_unit(rng, 800)
    items = list(zip(make_ids(800), m, strict=True))
    # 800 >= 4 x 192
    assert Gallery.build(items, IndexParams(build_threads=1, exact_max=0, graph_dim=192)).graph_dim == 192
    assert Gallery.build(items[:700], IndexParams(build_threads=1, exact_max=0, graph_dim=192)).graph_dim == DIM
    assert Gallery.build(items, IndexParams(build_threads=1, exact_max=0, graph_dim=DIM)).graph_dim == DIM


def test_a_failed_graph_build_leaves_the_gallery_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(33)
    ids, matrix = make_ids(40), random_unit(rng, 40)
    gallery = Gallery(IndexParams(build_threads=1, exact_max=30))
    gallery.add(list(zip(ids[:30], matrix[:30], strict=True)))

    def fail(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("no room for the graph")

    monkeypatch.setattr(Graph, "insert", fail)
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
    gallery = Gallery(IndexParams(build_threads=1, exact_max=10, rerank_k=2))
    gallery.add(list(zip(ids[:10], matrix[:10], strict=True)))
    gallery.add([(ids[0], matrix[16]), *zip(ids[10:], matrix[10:16], strict=True)])
    assert len(gallery) == 16 and gallery.deleted_count == 1 and gallery.graph_shards == 1
    assert gallery._graph is not None
    assert sum(gallery._graph.live) == 16
    hits = gallery.search(matrix[0], k=14)  # graph path: 14 < live, and each shard asked for 14
    assert len(hits) == 14 and len({c.id for c in hits}) == 14
    assert all(c.score < 0.99 for c in hits)  # the replaced vector is gone everywhere


# ---- removal -------------------------------------------------------------------------------------


def _graph_vectors(g: Gallery) -> np.ndarray:
    """Every vector hnswlib stores, tombstones included (read from its serialised state)."""
    assert g._graph is not None
    parts = []
    for index in g._graph.shards:
        assert index is not None
        st = cast(tuple[dict[str, Any]], index.__getstate__())[0]  # hnswlib's pickle state (typed object)
        rows = st["data_level0"].reshape(-1, st["size_data_per_element"])[: st["cur_element_count"]]
        parts.append(np.ascontiguousarray(rows[:, st["offset_data"]: st["offset_data"] + g._graph.dim * 4]))
    return np.concatenate(parts).view(np.float32)


@pytest.mark.parametrize("removed", [1, 600], ids=["one_in_place", "many_by_shard_rewrite"])
def test_removal_overwrites_the_vector_in_the_exact_store_and_the_graph(removed: int) -> None:
    rng = np.random.default_rng(11)
    ids, matrix = make_ids(3000), faces_like(rng, 3000)
    g = Gallery.build(zip(ids, matrix, strict=True), IndexParams(exact_max=64, graph_dim=64, build_threads=2))
    assert g.graph_dim == 64  # projected
    probes = near(rng, matrix)
    before = [g.search(q, k=2) for q in probes[removed:]]
    g.remove(ids[:removed])
    assert g._graph is not None
    projected = g._graph.project(matrix[:removed])
    stored = _graph_vectors(g)
    for v, p in zip(matrix[:removed], projected, strict=True):
        assert np.min(np.linalg.norm(g._store.vectors - v, axis=1)) > 0.5
        assert np.min(np.linalg.norm(stored - p, axis=1)) > 0.01 * np.linalg.norm(p)
    assert len(g) == 3000 - removed and g.deleted_count == removed
    # The others are found as before, and a removed id never comes back.
    after = [g.search(q, k=2) for q in probes[removed:]]
    assert [r[0].id for r in after] == [r[0].id for r in before]
    assert not {c.id for q in probes[:removed] for c in g.search(q, k=2)} & set(ids[:removed])

