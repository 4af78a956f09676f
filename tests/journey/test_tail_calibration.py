"""The impostor-tail calibration math (ops/bench/calibration.py): folds, fit, bootstrap bound, binomial CI."""

from __future__ import annotations

import numpy as np
import pytest

from flighttoken.decisions.match import impostor_rate, size_threshold
from ops.bench.calibration import (
    Pairs,
    TailFit,
    bootstrap_bound,
    bound_line,
    clopper_pearson,
    fit_tail,
    identity_folds,
    survival,
    total_pairs,
)


def test_folds_are_identity_disjoint_balanced_and_reproducible():
    counts = np.array([1] * 70 + [2] * 20 + [6] * 10)
    folds = identity_folds(counts, 5, seed=3)
    assert folds.shape == (100,)
    assert set(folds.tolist()) == set(range(5))
    for k in range(5):
        mine = folds == k
        assert mine.sum() == 20  # every identity in exactly one fold, folds equal in size
        assert (counts[mine] == 6).sum() == 2  # many-photo people spread evenly
    assert np.array_equal(folds, identity_folds(counts, 5, seed=3))
    assert not np.array_equal(folds, identity_folds(counts, 5, seed=4))


def test_total_pairs_counts_different_identity_photo_pairs_with_weights():
    photos = np.array([1, 2, 3])
    assert total_pairs(photos) == pytest.approx(1 * 2 + 1 * 3 + 2 * 3)
    # Identity 2 drawn twice, identity 0 not at all: copies of one person never pair as impostors.
    assert total_pairs(photos, np.array([0.0, 1.0, 2.0])) == pytest.approx(2 * 6)


def _pairs(scores, a, b, photos) -> Pairs:
    order = np.argsort(-np.asarray(scores))
    return Pairs(np.asarray(scores)[order], np.asarray(a)[order], np.asarray(b)[order], np.asarray(photos))


def test_survival_is_the_weighted_share_at_or_above_each_score():
    p = _pairs([0.5, 0.4, 0.3], [0, 0, 1], [1, 2, 2], [2, 2, 1])  # 4 + 2 + 2 = 8 pairs in all
    assert survival(p, np.array([0.45, 0.4, 0.35, 0.6])) == pytest.approx([1 / 8, 2 / 8, 2 / 8, 0.0])
    w = np.array([1.0, 2.0, 0.0])  # identity 1 twice, identity 2 dropped: 2*(1*2)*2 = 8 pairs
    assert survival(p, np.array([0.45]), w) == pytest.approx([2 / 8])


def test_select_keeps_only_pairs_inside_the_training_identities():
    p = _pairs([0.5, 0.4, 0.3], [0, 0, 1], [1, 2, 2], [2, 2, 1]).select(np.array([0, 2]))
    assert p.score.tolist() == [0.4]
    assert p.photos.tolist() == [2, 0, 1]


def test_fit_recovers_the_service_tail_model():
    grid = np.round(np.arange(0.2, 0.5, 0.01), 3)
    p = np.array([impostor_rate(t, 0.40, 0.05) for t in grid])
    fit = fit_tail(grid, p, (1e-7, 1e-3))
    assert fit.score_1e6 == pytest.approx(0.40, abs=1e-9)
    assert fit.decade == pytest.approx(0.05, abs=1e-9)
    # Its threshold is the service's size_threshold for the same per-comparison budget.
    budget = -np.expm1(np.log1p(-0.003) / 4000)
    assert fit.threshold(np.log10(budget)) == pytest.approx(size_threshold(4000, 0.003, 0.40, 0.05))


def test_fit_refuses_a_range_without_points():
    with pytest.raises(ValueError):
        fit_tail(np.array([0.1, 0.2]), np.array([0.5, 0.4]), (1e-6, 1e-5))


def test_bound_line_lies_on_or_above_the_quantile_everywhere():
    fits = [TailFit(0.40 + 0.01 * k, 0.05 + 0.002 * (k % 3)) for k in range(-5, 6)]
    bound = bound_line(fits, 0.9, (-8.0, -4.0))
    x = np.linspace(-8.0, -4.0, 50)
    q = np.quantile(np.array([f.threshold(x) for f in fits]), 0.9, axis=0)
    assert np.all(bound.threshold(x) >= q - 1e-9)
    assert bound.threshold(-6.0) >= TailFit(0.40, 0.05).threshold(-6.0)


def test_bootstrap_bound_is_above_the_point_fit_on_a_synthetic_tail():
    rng = np.random.default_rng(0)
    n_id = 400
    photos = rng.integers(1, 4, n_id)
    # Identity-level effects (some people look like many others): the clustering a bootstrap over
    # photos would miss.
    lift = rng.normal(0.0, 0.03, n_id)
    a = rng.integers(0, n_id, 60_000)
    b = (a + rng.integers(1, n_id, a.size)) % n_id
    score = rng.normal(0.0, 0.08, a.size) + lift[a] + lift[b]
    keep = score > 0.1
    pairs = _pairs(score[keep], a[keep], b[keep], photos)
    # Scale so the share is relative to the sampled pairs (the synthetic "all pairs").
    pairs = Pairs(pairs.score, pairs.a, pairs.b, photos)
    grid = np.round(np.arange(0.1, 0.5, 0.005), 3)
    p = survival(pairs, grid)
    p_range = (float(p[p > 0].min()) * 3, float(p.max()) / 3)
    point, bound, fits = bootstrap_bound(pairs, grid, p_range, replicates=30, quantile=0.95, seed=1)
    assert len(fits) == 30
    x = np.linspace(-8.0, -4.5, 10)
    assert np.all(bound.threshold(x) >= point.threshold(x) - 1e-6)


@pytest.mark.parametrize(("k", "n"), [(0, 100), (3, 1000), (100, 100), (7, 1210)])
def test_clopper_pearson_brackets_the_rate(k, n):
    lo, hi = clopper_pearson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    if k == 0:
        assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-6)  # exact for k = 0


def test_clopper_pearson_of_the_outside_check():
    lo, hi = clopper_pearson(7, 1210)  # issue 19: 7 of 1,210 strangers at N ~ 4,400
    assert lo > 0.002 and hi < 0.013


def _cohort():
    """Six identities, two photos each, orthogonal-ish templates; identities 0 and 1 aliased."""
    from ops.bench.accuracy.cohort import Cohort
    from ops.bench.accuracy.features import Features

    rng = np.random.default_rng(5)
    ident = np.repeat(np.arange(6), 2).astype(np.int32)
    centres = rng.normal(size=(6, 32))
    centres[1] = centres[0]  # one person under two names
    v = centres[ident] + 0.1 * rng.normal(size=(12, 32))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    n = len(ident)
    f = Features([f"id{i}/{k}.jpg" for k, i in enumerate(ident)], ident, [f"id{i}" for i in range(6)],
                 np.ones(n, bool), {"plain": v, "flip": v}, np.ones(n), np.zeros((n, 7)), np.zeros(n, int),
                 np.zeros(n, bool), [[] for _ in range(n)])
    return Cohort.build(f, v)


def test_cohort_enrols_first_passing_photo_and_finds_the_alias():
    c = _cohort()
    assert c.enrol_photo.tolist() == [0, 2, 4, 6, 8, 10]
    assert frozenset((0, 1)) in c.aliases
    probes = c.mated_probes(int(c.folds[0]))
    assert 1 in probes and 0 not in probes  # the enrolment photo is never its own probe


def test_draw_keeps_own_identity_in_mated_and_out_of_stranger_searches():
    from ops.bench.accuracy.cohort import draw

    c = _cohort()
    rng = np.random.default_rng(0)
    probes = np.arange(12)
    allowed = np.arange(len(c.cols))
    for _ in range(5):
        mated = draw(c, probes, allowed, 3, True, rng)
        assert mated.size == 3
        assert np.all(mated.top1 >= mated.top2)
        stranger = draw(c, probes, allowed, 10, False, rng)
        assert stranger.size == 4  # clipped: own identity and its alias never drawn
        own = c.f.identity[probes]
        assert not np.any(stranger.top_identity == own)
        aliased = np.isin(own, [0, 1])
        assert not np.any(np.isin(stranger.top_identity[aliased], [0, 1]))
