"""Issue 19 part 2: the impostor tail fitted on some folds, its thresholds checked on the others.

For each of K identity-disjoint folds: the tail is fitted on pairs whose two people are both outside
the fold (point estimate, and the identity-bootstrap upper bound the service's settings should
carry); then non-mated searches by the fold's own people are drawn at N = 420 and 1,000 (galleries
of the fold's own enrolled people only) and N ~ 4,000 (every enrolled lfw-train identity but the
probe's: no held-out fold is that large, so two-thirds of that gallery are training people, but
every comparison scored pairs a held-out probe with someone, and no such pair entered the fit).
Observed FPIR (top score >= the size threshold; the margin is shown apart, the model ignores it)
is set against the prediction with a Clopper-Pearson 95 % interval. The watchlist threshold is
refitted the same way: its alarm budget on a list of ``WATCHLIST_SIZE`` people, per fold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flighttoken.decisions.match import predicted_fpir, size_threshold
from flighttoken.settings import Settings
from ops.bench.accuracy.cohort import ALIAS_SCORE, FOLDS, Cohort, draw, tail_pairs, without_aliases
from ops.bench.accuracy.features import err
from ops.bench.calibration import Pairs, TailFit, bootstrap_bound, clopper_pearson

# Fixed before the validation folds were looked at; not tuned on them.
P_RANGE = (1e-6, 1e-4)  # fitted p range: the two decades nearest the operating range with >= ~10 pairs per fold
QUANTILE = 0.95  # one-sided upper bound on the threshold
REPLICATES = 200
GRID = np.round(np.arange(0.15, 0.80, 0.0025), 4)
SIZES = {"n420": 420, "n1000": 1000, "n4000": None}  # None: every enrolled identity but the probe's
TARGETS = (0.003, 0.001)
WATCHLIST_SIZE = 420  # ops/bench/watchlist.py: a list of 420 people, 1 % of travellers alarmed at most
WATCHLIST_BUDGET = 0.01


def fits(c: Cohort, pairs: Pairs, seed: int = 0) -> dict[str, tuple[TailFit, TailFit]]:
    """(point, bound) per fold ("fold0".."fold2": fitted without that fold) and on all of lfw-train."""
    out = {}
    for k in range(FOLDS):
        train = np.flatnonzero(c.folds != k)
        point, bound, _ = bootstrap_bound(pairs.select(train), GRID, P_RANGE, REPLICATES, QUANTILE, seed + k)
        out[f"fold{k}"] = (point, bound)
    point, bound, _ = bootstrap_bound(pairs, GRID, P_RANGE, REPLICATES, QUANTILE, seed + FOLDS)
    out["all"] = (point, bound)
    for name, (p, b) in out.items():
        err(f"tail fit {name:6}: point score_1e6 {p.score_1e6:.4f} decade {p.decade:.4f} | "
            f"bound ({QUANTILE:.0%}) score_1e6 {b.score_1e6:.4f} decade {b.decade:.4f}")
    return out


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n)
    return {"accepted": k, "searches": n, "fpir": round(k / max(n, 1), 5), "ci95": [round(lo, 5), round(hi, 5)]}


def validate(c: Cohort, tails: dict[str, tuple[TailFit, TailFit]], s: Settings, seed: int = 0) -> dict[str, Any]:
    """Per fold, per N, per target: predicted vs observed FPIR of the point, bound and current tails."""
    rows: list[dict[str, Any]] = []
    pooled: dict[tuple[str, float, str], list[int]] = {}
    current = TailFit(s.decisions.impostor_tail_score_1e6, s.decisions.impostor_tail_decade)
    rng = np.random.default_rng(seed)
    for k in range(FOLDS):
        point, bound = tails[f"fold{k}"]
        probes = c.non_mated_probes(k)
        probes = probes[c.ok[probes]]  # acquired captures only: refused ones raise no alarm
        for label, size in SIZES.items():
            allowed = c.columns_of(c.held_out(k)) if size else np.arange(len(c.cols))
            d = draw(c, probes, allowed, size or len(c.cols), False, rng)
            for target in TARGETS:
                row: dict[str, Any] = {"fold": k, "n": label, "gallery": d.size, "target": target}
                for name, tail in (("bound", bound), ("point", point), ("current", current)):
                    t = size_threshold(d.size, target, tail.score_1e6, tail.decade)
                    hits = int((d.top1 >= t).sum())
                    with_margin = int(((d.top1 >= t) & (d.top1 - d.top2 >= s.decisions.decision_margin)).sum())
                    row[name] = {"t": round(t, 4), **_rate(hits, len(probes)),
                                 "fpir_predicted_by_point_fit": round(
                                     predicted_fpir(t, d.size, point.score_1e6, point.decade), 5),
                                 "accepted_with_margin": with_margin}
                    acc = pooled.setdefault((label, target, name), [0, 0])
                    acc[0] += hits
                    acc[1] += len(probes)
                rows.append(row)
    summary = {}
    for (label, target, name), (hits, n) in pooled.items():
        summary.setdefault(name, {}).setdefault(label, {})[str(target)] = _rate(hits, n)
    met = {name: all(r[name]["fpir"] <= r["target"] for r in rows) for name in ("bound", "point", "current")}
    _print(rows)
    return {"folds": FOLDS, "p_range": list(P_RANGE), "quantile": QUANTILE, "replicates": REPLICATES,
            "rows": rows, "pooled": summary, "met_every_fold_every_n": met}


def _print(rows: list[dict[str, Any]]) -> None:
    err("\npredicted vs observed FPIR on held-out folds (threshold only; bound = the proposed settings)")
    err(f"{'fold':>4} {'N':>6} {'target':>6} | {'t bound':>7} {'observed':>16} {'CI95':>17} | "
        f"{'t point':>7} {'observed':>16} | {'t now':>6} {'observed':>16}")
    for r in rows:
        b, p, cur = r["bound"], r["point"], r["current"]
        err(f"{r['fold']:>4} {r['gallery']:>6} {r['target']:>6} | {b['t']:>7.4f} "
            f"{b['accepted']:>5}/{b['searches']:<5} {b['fpir']:.4f} [{b['ci95'][0]:.4f},{b['ci95'][1]:.4f}] | "
            f"{p['t']:>7.4f} {p['accepted']:>5}/{p['searches']:<5} {p['fpir']:.4f} | "
            f"{cur['t']:>6.3f} {cur['accepted']:>5}/{cur['searches']:<5} {cur['fpir']:.4f}")


def watchlist(c: Cohort, tails: dict[str, tuple[TailFit, TailFit]], s: Settings, seed: int = 0) -> dict[str, Any]:
    """The watchlist threshold from the bound (alarm budget on a WATCHLIST_SIZE list), per held-out
    fold: a random list of the fold's enrolled people; every other photo with a face is screened (the
    service screens every capture with a template, quality or not)."""
    rng = np.random.default_rng(seed + 100)
    rows = []
    for k in range(FOLDS):
        t_new = size_threshold(WATCHLIST_SIZE, WATCHLIST_BUDGET, *_params(tails[f"fold{k}"][1]))
        listed = rng.choice(c.columns_of(c.held_out(k)), WATCHLIST_SIZE, replace=False)
        listed.sort()
        on = np.zeros(len(c.f.names), bool)
        on[c.cols[listed]] = True
        fold_photos = np.flatnonzero((c.folds[c.f.identity] == k) & c.f.found)
        ident = c.f.identity[fold_photos]
        mated = fold_photos[on[ident] & (fold_photos != c.enrol_photo[ident])]
        non = fold_photos[~on[ident]]
        sm, sn = c.scores[np.ix_(mated, listed)], c.scores[np.ix_(non, listed)]
        best_m, best_n = sm.max(axis=1), sn.max(axis=1)
        right = c.cols[listed[sm.argmax(axis=1)]] == c.f.identity[mated]
        row: dict[str, Any] = {"fold": k, "listed": WATCHLIST_SIZE}
        for name, t in (("bound", t_new), ("current", s.watchlist.watchlist_threshold)):
            alarms = int((best_n >= t).sum())
            row[name] = {"t": round(t, 4), "false_alarms": _rate(alarms, len(non)),
                         "hit_rate": round(float(((best_m >= t) & right).mean()), 4), "mated": len(mated)}
        rows.append(row)
        b, cur = row["bound"], row["current"]
        err(f"watchlist fold {k}: bound t={b['t']:.4f} false alarms {b['false_alarms']['fpir']:.4f} "
            f"{b['false_alarms']['ci95']} hits {b['hit_rate']:.4f} | now t={cur['t']} false alarms "
            f"{cur['false_alarms']['fpir']:.4f} hits {cur['hit_rate']:.4f}")
    recommended = size_threshold(WATCHLIST_SIZE, WATCHLIST_BUDGET, *_params(tails["all"][1]))
    return {"list_size": WATCHLIST_SIZE, "alarm_budget": WATCHLIST_BUDGET, "rows": rows,
            "recommended_threshold": round(recommended, 3),
            "met_every_fold": all(r["bound"]["false_alarms"]["fpir"] <= WATCHLIST_BUDGET for r in rows)}


def _params(t: TailFit) -> tuple[float, float]:
    return t.score_1e6, t.decade


def run(c: Cohort, s: Settings) -> tuple[dict[str, Any], dict[str, tuple[TailFit, TailFit]]]:
    every = tail_pairs(c.f, c.vecs, c.ok)
    pairs = without_aliases(every, c.aliases)
    err(f"\n-- calibration (issue 19): {len(pairs.score):,} impostor pairs >= {pairs.score[-1]:.2f} of "
        f"{pairs.photos.sum():,} capture-passing photos ({len(every.score) - len(pairs.score)} pairs of "
        f"{len(c.aliases)} LFW alias name pairs >= {ALIAS_SCORE} left out); {FOLDS} identity folds --")
    tails = fits(c, pairs)
    names = c.f.names
    out = {"lfw_aliases": sorted("/".join(sorted(names[i] for i in pair)) for pair in c.aliases),
           "tails": {name: {"point": vars(p), "bound": vars(b)} for name, (p, b) in tails.items()},
           "validation": validate(c, tails, s), "watchlist": watchlist(c, tails, s)}
    b = tails["all"][1]
    out["recommended"] = {"impostor_tail_score_1e6": round(b.score_1e6, 3), "impostor_tail_decade": round(b.decade, 3),
                          "watchlist_threshold": out["watchlist"]["recommended_threshold"]}
    return out, tails
