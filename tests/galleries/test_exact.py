"""The exact store: exact top-k, validation and normalisation of what goes in, tombstones zeroed,
and exhaustive search over a store that is mostly tombstones."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from flighttoken.galleries import Gallery, IndexParams, exact_top_k
from flighttoken.galleries.exact import ExactStore
from tests.galleries.vectors import DIM, TOL, brute, make_ids, near, random_unit

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


# ---- the store's books ---------------------------------------------------------------------------


def test_retired_labels_are_zeroed_unbound_and_never_reused() -> None:
    rng = np.random.default_rng(22)
    store = ExactStore(DIM, capacity=2)
    labels = store.claim(random_unit(rng, 3))  # past capacity: grows
    assert labels.tolist() == [0, 1, 2] and store.capacity >= 64
    assert store.bind(["a", "b", "c"], labels) == []
    store.in_graph[[1, 2]] = True
    assert store.bind(["b"], store.claim(random_unit(rng, 1))) == [1]  # "b" leaves label 1
    store.id_labels.pop("a")  # removing an id: the gallery unbinds it, then retires its label
    assert store.retire([1, 0]).tolist() == [1]  # only labels in the graph are for it to erase
    assert not store.vectors[[0, 1]].any() and store.label_ids[:2] == [None, None]
    assert store.next_label == 4 and store.deleted_count == 2 and len(store) == 2
    labels, _ = store.search(store.vectors[2], k=4)
    assert labels.tolist() == [2, 3]  # the live ones only, best first


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


def test_scores_are_cosine_even_for_unnormalised_input() -> None:
    rng = np.random.default_rng(18)
    m = random_unit(rng, 30)
    gallery = Gallery(IndexParams(build_threads=1, exact_max=0))
    gallery.add([(f"f{i}", 3.0 * v) for i, v in enumerate(m)])
    np.testing.assert_allclose(gallery.vector("f4"), m[4], atol=1e-6)
    top = gallery.search(7.0 * m[4], k=1)[0]
    assert top.id == "f4" and top.score == pytest.approx(1.0, abs=TOL)


def test_a_gallery_of_mostly_departed_faces_searches_only_the_live_ones() -> None:
    # A departure window after its early flights left: most slots are tombstones, and the
    # exhaustive search copies out the live rows instead of scoring every slot.
    rng = np.random.default_rng(21)
    ids, matrix = make_ids(900), random_unit(rng, 900)
    gallery = Gallery.build(zip(ids, matrix, strict=True), IndexParams(build_threads=1, exact_max=1024))
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

