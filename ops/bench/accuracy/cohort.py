"""The cohort every service-level and calibration figure shares: enrolments, identity folds, scores, draws.

* Enrolment as the kiosk does it: an identity's first photo passing the quality gates (the kiosk
  retakes until one passes; ``first_refused`` counts the retakes); no passing photo at all is a
  failure to enrol (FTE). One template per enrolled identity: the gallery columns.
* Folds: ``identity_folds`` over every identity (K = 3 keeps >= 1,000 enrolled identities in each
  held-out fold, so the N = 1,000 gallery can be drawn from held-out people alone).
* A search of N faces is drawn per probe: N random enrolled identities from the allowed columns,
  with the probe's own identity always in (mated) or never in (non-mated); its top two scores and
  the rank-1 column are what ``decide_match`` sees.
* ``tail_pairs``: every different-identity pair of capture-passing photos scoring >= ``PAIR_FLOOR``
  (the impostor tail the calibration fits), with the photos per identity behind the pair count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ops.bench.accuracy.features import Features
from ops.bench.calibration import Pairs, identity_folds

FOLDS = 3
FOLD_SEED = 19  # the number: fixed before any figure was seen
PAIR_FLOOR = 0.15  # well below p = 1e-4 (~0.28): every fitted point lies above it
# A different-name pair of photos this close is, on LFW, one person under two names, one photo filed
# twice, or twins (Sepp/Joseph Blatter, Jon/John Gruden, Ricky Ray/Bart Hendricks: same photo). Such
# name pairs are LFW's same-person aliases: never strangers to each other, in the fit or the searches.
ALIAS_SCORE = 0.50


@dataclass
class Cohort:
    f: Features
    vecs: np.ndarray  # the service's templates (flip-averaged when flip_average)
    ok: np.ndarray  # (photos,) the capture passes the quality gates (gate, lounge, kiosk)
    ok_e: np.ndarray  # ... and shows no tailgater (e-channel)
    enrol_photo: np.ndarray  # (identities,) the enrolment photo, -1: failed to enrol
    first_refused: int  # identities whose first photo the kiosk refused (retaken)
    folds: np.ndarray  # (identities,) fold of each identity
    cols: np.ndarray  # identity of each gallery column (enrolled identities)
    col_of: np.ndarray  # (identities,) column of each identity, -1 if not enrolled
    scores: np.ndarray  # (photos, columns) every photo against every enrolled template
    aliases: set[frozenset[int]]  # name pairs with some photo pair >= ALIAS_SCORE

    @classmethod
    def build(cls, f: Features, vecs: np.ndarray) -> Cohort:
        ok, ok_e = f.capture_ok(), f.capture_ok(e_channel=True)
        enrol = np.full(len(f.names), -1, np.int64)
        first_refused = 0
        seen = np.zeros(len(f.names), bool)
        for p, ident in enumerate(f.identity):  # photos are in file order
            if not seen[ident]:
                seen[ident] = True
                first_refused += int(not ok[p])
            if enrol[ident] < 0 and ok[p]:
                enrol[ident] = p
        photos = np.bincount(f.identity, minlength=len(f.names))
        folds = identity_folds(photos, FOLDS, FOLD_SEED)
        cols = np.flatnonzero(enrol >= 0)
        col_of = np.full(len(f.names), -1, np.int64)
        col_of[cols] = np.arange(len(cols))
        scores = vecs @ vecs[enrol[cols]].T
        return cls(f, vecs, ok, ok_e, enrol, first_refused, folds, cols, col_of, scores, find_aliases(f, vecs))

    def alias_columns(self, identity: int) -> list[int]:
        others = [next(iter(pair - {identity})) for pair in self.aliases if identity in pair]
        return [int(self.col_of[i]) for i in others if self.col_of[i] >= 0]

    def held_out(self, fold: int) -> np.ndarray:
        """Identities of a fold."""
        return np.flatnonzero(self.folds == fold)

    def columns_of(self, identities: np.ndarray) -> np.ndarray:
        c = self.col_of[identities]
        return c[c >= 0]

    def mated_probes(self, fold: int) -> np.ndarray:
        """Photos of the fold's enrolled identities other than their enrolment photo."""
        ident = self.f.identity
        enrolled = (self.folds[ident] == fold) & (self.enrol_photo[ident] >= 0)
        return np.flatnonzero(enrolled & (np.arange(len(ident)) != self.enrol_photo[ident]))

    def non_mated_probes(self, fold: int) -> np.ndarray:
        """Every photo of the fold's identities (searched against galleries without them)."""
        return np.flatnonzero(self.folds[self.f.identity] == fold)


@dataclass
class Drawn:
    """Per probe, one search of ``size`` faces: rank-1 identity, top two scores."""

    size: int
    top_identity: np.ndarray  # identity of the rank-1 candidate
    top1: np.ndarray
    top2: np.ndarray


def draw(c: Cohort, probes: np.ndarray, allowed: np.ndarray, size: int, mated: bool,
         rng: np.random.Generator) -> Drawn:
    """One gallery of ``size`` columns per probe, from ``allowed`` columns; the probe's own column
    always in it (``mated``) or never. ``size`` above what ``allowed`` offers is clipped."""
    own = c.col_of[c.f.identity[probes]]
    sub = c.scores[np.ix_(probes, allowed)]
    keys = rng.random(sub.shape)
    pos = np.searchsorted(allowed, own)  # where the own column sits in ``allowed`` (sorted)
    has = (own >= 0) & (pos < len(allowed)) & (allowed[np.minimum(pos, len(allowed) - 1)] == own)
    rows = np.flatnonzero(has)
    keys[rows, pos[rows]] = -1.0 if mated else 2.0  # drawn first, or never
    if not mated:  # a stranger search never holds the probe's own LFW aliases (same person, other name)
        for r, ident in enumerate(c.f.identity[probes]):
            for col in c.alias_columns(int(ident)):
                at = np.searchsorted(allowed, col)
                if at < len(allowed) and allowed[at] == col:
                    keys[r, at] = 2.0
    # Never-drawn columns (own, aliases) stay out only if the gallery leaves room for all of them.
    size = min(size, len(allowed) - int((keys >= 2.0).sum(axis=1).max(initial=0)))
    chosen = np.argpartition(keys, size - 1, axis=1)[:, :size]
    g = np.take_along_axis(sub, chosen, axis=1)
    best2 = np.argpartition(-g, 1, axis=1)[:, :2]
    s2 = np.take_along_axis(g, best2, axis=1)
    first = np.argmax(s2, axis=1)
    r = np.arange(len(probes))
    top1, top2 = s2[r, first], s2[r, 1 - first]
    top_col = allowed[chosen[r, best2[r, first]]]
    return Drawn(size, c.cols[top_col], top1, top2)


def find_aliases(f: Features, vecs: np.ndarray) -> set[frozenset[int]]:
    """Name pairs with some photo pair (faces found, any quality) scoring >= ALIAS_SCORE."""
    idx = np.flatnonzero(f.found)
    v, ids = vecs[idx], f.identity[idx]
    out: set[frozenset[int]] = set()
    for start in range(0, len(idx), 1024):
        r, col = np.nonzero(v[start:start + 1024] @ v.T >= ALIAS_SCORE)
        out |= {frozenset((int(x), int(y))) for x, y in zip(ids[start + r], ids[col], strict=True) if x != y}
    return out


def without_aliases(pairs: Pairs, aliases: set[frozenset[int]]) -> Pairs:
    """The impostor pairs minus every pair of two aliased names (label noise, not impostors)."""
    keep = np.array([frozenset((int(a), int(b))) not in aliases for a, b in zip(pairs.a, pairs.b, strict=True)])
    return Pairs(pairs.score[keep], pairs.a[keep], pairs.b[keep], pairs.photos)


def tail_pairs(f: Features, vecs: np.ndarray, ok: np.ndarray, floor: float = PAIR_FLOOR) -> Pairs:
    """Every different-identity pair of ``ok`` photos scoring >= ``floor``, best first."""
    idx = np.flatnonzero(ok)
    v, ids = vecs[idx], f.identity[idx]
    sc, aa, bb = [], [], []
    for start in range(0, len(idx), 1024):
        block = v[start:start + 1024] @ v.T
        rows = np.arange(start, min(start + 1024, len(idx)))
        keep = (block >= floor) & (ids[rows][:, None] != ids[None, :]) & (np.arange(len(idx))[None, :] > rows[:, None])
        r, col = np.nonzero(keep)
        sc.append(block[r, col])
        aa.append(ids[rows[r]])
        bb.append(ids[col])
    score, a, b = np.concatenate(sc), np.concatenate(aa), np.concatenate(bb)
    order = np.argsort(-score, kind="stable")
    photos = np.bincount(ids, minlength=len(f.names))
    return Pairs(score[order], a[order], b[order], photos)
