"""Impostor-tail calibration that generalises: identity-disjoint folds, a bootstrap upper bound, binomial CIs.

Pure math, no faces: ``ops/bench/accuracy`` feeds it scores. The service's tail model is
``rules.impostor_rate``: p(t) = 10^(-6 - (t - score_1e6) / decade), the share of different-person
comparisons scoring >= t, and ``rules.size_threshold`` turns it into the threshold of an N-face
search. Fitting that line to one set of pairs and extrapolating it to p ~ 1e-7 is optimistic on
people never seen (issue 19), so:

* ``identity_folds``: K folds of identities (never of photos), balanced by photo count;
* ``fit_tail``: least squares of log10 p on t over a p range, on weighted pairs;
* ``bootstrap_bound``: identities resampled with replacement (each pair weighted by its two
  identities' draw counts, the way a resample would count it), a fit per replicate, and the
  ``quantile`` of the replicates' thresholds over the operating range of p, as one (score_1e6,
  decade) line lying on or above that quantile everywhere: the service's two settings, conservative;
* ``clopper_pearson``: exact binomial interval of an observed rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

# Per-comparison p of the thresholds in use: 0.001/42,000 (e-channel, largest window) to 0.01/420
# (the watchlist's alarm budget on a 420-person list).
OPERATING_LOG10_P = (-8.0, -4.5)


@dataclass(frozen=True)
class TailFit:
    score_1e6: float  # score one impostor comparison in a million reaches
    decade: float  # score rise that makes it ten times rarer

    def threshold(self, log10_p: np.ndarray | float) -> np.ndarray | float:
        """Inverse of the tail: the score whose per-comparison rate is 10^log10_p (``rules.size_threshold``)."""
        return self.score_1e6 - self.decade * (6.0 + np.asarray(log10_p))


@dataclass(frozen=True)
class Pairs:
    """Impostor pairs at or above a floor score (the tail), with what is needed to weight them."""

    score: np.ndarray  # (m,) descending
    a: np.ndarray  # (m,) identity index of one side
    b: np.ndarray  # (m,) the other side (a != b)
    photos: np.ndarray  # (n_identities,) photos per identity entering the comparisons

    def select(self, identities: np.ndarray) -> Pairs:
        """Only pairs whose two identities are both in ``identities`` (a training fold set)."""
        inside = np.zeros(len(self.photos), bool)
        inside[identities] = True
        keep = inside[self.a] & inside[self.b]
        return Pairs(self.score[keep], self.a[keep], self.b[keep], np.where(inside, self.photos, 0))


def identity_folds(photo_counts: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of each identity: shuffled, then dealt round-robin in order of photo count, so
    each fold gets a like share of single-photo and many-photo people."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(photo_counts))
    order = order[np.argsort(-np.asarray(photo_counts)[order], kind="stable")]
    folds = np.empty(len(photo_counts), np.int64)
    folds[order] = np.arange(len(order)) % k
    return folds


def total_pairs(photos: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Different-identity photo pairs, each identity counted ``weights`` times."""
    w = np.ones(len(photos)) if weights is None else weights
    x = w * photos
    return float((x.sum() ** 2 - (x * x).sum()) / 2.0)


def survival(pairs: Pairs, grid: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Share of impostor pairs scoring >= each grid score (grid above the pairs' floor)."""
    w = np.ones(len(pairs.photos)) if weights is None else weights
    cum = np.concatenate([[0.0], np.cumsum(w[pairs.a] * w[pairs.b])])
    above = np.searchsorted(-pairs.score, -np.asarray(grid), side="right")  # pairs with score >= t
    return cum[above] / total_pairs(pairs.photos, w)


def fit_tail(grid: np.ndarray, p: np.ndarray, p_range: tuple[float, float]) -> TailFit:
    """Least-squares line of log10 p on t over the grid points with p in ``p_range``."""
    use = (p >= p_range[0]) & (p <= p_range[1])
    if use.sum() < 3:
        raise ValueError("fewer than 3 grid points in the fitted p range")
    slope, intercept = np.polyfit(grid[use], np.log10(p[use]), 1)
    return TailFit(float((-6.0 - intercept) / slope), float(-1.0 / slope))


def bound_line(fits: list[TailFit], quantile: float, log10_p: tuple[float, float] = OPERATING_LOG10_P) -> TailFit:
    """One tail line whose thresholds are at or above the ``quantile`` of the fits' thresholds at
    every p of the operating range: the fitted line through those quantiles, raised to touch them."""
    x = np.linspace(*log10_p, 36)
    t = np.quantile(np.array([f.threshold(x) for f in fits]), quantile, axis=0)
    slope, intercept = np.polyfit(6.0 + x, t, 1)  # t = intercept + slope * (6 + log10 p)
    lift = float(np.max(t - (intercept + slope * (6.0 + x))))
    return TailFit(float(intercept + lift), float(-slope))


def bootstrap_bound(pairs: Pairs, grid: np.ndarray, p_range: tuple[float, float], replicates: int,
                    quantile: float, seed: int) -> tuple[TailFit, TailFit, list[TailFit]]:
    """(point fit, upper-bound line, replicate fits): identities drawn with replacement among
    those with photos, each replicate fitted over the same p range as the point estimate."""
    point = fit_tail(grid, survival(pairs, grid), p_range)
    rng = np.random.default_rng(seed)
    present = np.flatnonzero(pairs.photos > 0)
    fits = []
    for _ in range(replicates):
        w = np.zeros(len(pairs.photos))
        np.add.at(w, rng.choice(present, len(present), replace=True), 1.0)
        fits.append(fit_tail(grid, survival(pairs, grid, w), p_range))
    return point, bound_line(fits, quantile), fits


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval of a rate k/n."""
    if n == 0:
        return 0.0, 1.0
    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi
