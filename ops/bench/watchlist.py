"""Watchlist screening accuracy on LFW: hit rate and false-alarm rate at the watchlist threshold.

    .venv/bin/python -m ops.bench.watchlist [--subjects 420] [--seeds 10] [--alarm-budget 0.01] [--no-cache]
                                            [--cover-only | --no-cover] [--cover-* ...]

Two parts: screening accuracy (below), then the cover's timing over HTTP (``ops.bench.watchlist_cover``:
hits, random secondary referrals and proceeds, compared with Kolmogorov-Smirnov). The run fails
(exit 1) if any pair of those latency distributions differs significantly.

Protocol (open-set 1:N in the style of NIST FRVT Part 7, as the service screens e-channel captures):
a watchlist of ``--subjects`` people drawn at random from the LFW identities with >= 2 photos, each
enrolled from ONE photo (the first that passes the service's quality gates, which the watchlist
API applies); mated probes are every other photo of a subject, non-mated probes every photo of the
identities not on the list. Probes without a detectable face are left out: the service cannot
screen them (they are refused as ``no_face``). Pooled over ``--seeds`` random lists.

* hit: the best-scoring subject is the mate and scores >= t (``any_alarm``: any subject does);
* false alarm: a non-mated probe whose best subject scores >= t.

The threshold is set for few misses rather than few false alarms: the LOWEST threshold whose
false-alarm rate stays within ``--alarm-budget`` (default 1 %: one traveller in a hundred sent to
an officer by a false alarm while the list holds 420 people), i.e. the most hits that alarm budget
buys. The service's ``watchlist_threshold`` default comes from this. Baseline measured in the same
run: the same lists screened at the passengers' e-channel threshold, the operating point tuned for
few false accepts. Embeddings come from ``ops.bench.accuracy``'s cache. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

from flighttoken import executor
from flighttoken.faces.engine import FaceEngine
from flighttoken.faces.quality import QualityThresholds
from flighttoken.logs import configure_logging
from flighttoken.settings import Settings, load_settings
from ops.bench import watchlist_cover
from ops.bench.accuracy.features import Features, extract, passes
from ops.bench.common import quiet_logs

SUBJECTS = 420
GRID = np.round(np.arange(0.15, 0.60001, 0.005), 3)


def err(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


@dataclass
class Screens:
    """Best watchlist score per probe, pooled over the random lists."""

    mated_best: np.ndarray
    mated_correct: np.ndarray  # the best subject is the mate
    non_best: np.ndarray
    subjects: int
    lists: int


def screen(f: Features, vecs: np.ndarray, usable: np.ndarray, n_subjects: int | None, seeds: int) -> Screens:
    by_id: dict[int, list[int]] = {}
    for i, ident in enumerate(f.identity):
        by_id.setdefault(int(ident), []).append(i)
    # Enrollable: >= 2 photos, one of which passes the quality gates (else the API refuses it).
    eligible = sorted(i for i, p in by_id.items() if len(p) >= 2 and any(usable[x] for x in p))
    mb, mc, nb = [], [], []
    draws = seeds if n_subjects else 1
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        chosen = sorted(rng.choice(eligible, n_subjects, replace=False)) if n_subjects else eligible
        on_list = np.zeros(len(f.names), bool)
        on_list[chosen] = True
        picks = [next(p for p in by_id[i] if usable[p]) for i in chosen]
        gallery, ids = vecs[picks], np.array(chosen)
        mated = np.array([p for i, pick in zip(chosen, picks, strict=True) for p in by_id[i]
                          if p != pick and f.found[p]])
        non = np.flatnonzero(~on_list[f.identity] & f.found)
        scores = vecs[mated] @ gallery.T
        best = scores.argmax(axis=1)
        mb.append(scores[np.arange(len(mated)), best])
        mc.append(ids[best] == f.identity[mated])
        nb.append((vecs[non] @ gallery.T).max(axis=1))
    return Screens(np.concatenate(mb), np.concatenate(mc), np.concatenate(nb), len(chosen), draws)


def at(s: Screens, t: float) -> dict[str, float]:
    hits = (s.mated_best >= t) & s.mated_correct
    return {"threshold": round(float(t), 4), "hit_rate": round(float(hits.mean()), 5),
            "miss_rate": round(float(1 - hits.mean()), 5),
            "any_alarm_rate": round(float((s.mated_best >= t).mean()), 5),
            "false_alarm_rate": round(float((s.non_best >= t).mean()), 5),
            "mated": len(s.mated_best), "non_mated": len(s.non_best), "subjects": s.subjects, "lists": s.lists}


def choose(s: Screens, budget: float) -> float:
    """Lowest grid threshold whose false-alarm rate is within the budget."""
    for t in GRID:
        if (s.non_best >= t).mean() <= budget:
            return float(t)
    return float(GRID[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    ap.add_argument("--subjects", type=int, default=SUBJECTS, help="people on each random watchlist")
    ap.add_argument("--seeds", type=int, default=10, help="random watchlists to pool")
    ap.add_argument("--alarm-budget", type=float, default=0.01, help="false-alarm rate the threshold may spend")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--cover-only", action="store_true", help="only the cover's latency comparison")
    ap.add_argument("--no-cover", action="store_true", help="only the screening accuracy")
    ap.add_argument("--cover-hits", type=int, default=100, help="travellers on the watchlist")
    ap.add_argument("--cover-others", type=int, default=260, help="travellers on no list")
    ap.add_argument("--cover-share", type=float, default=0.4,
                    help="random referral share for the timing run (enough referrals to compare)")
    ap.add_argument("--cover-alpha", type=float, default=0.01, help="significance level of each KS test")
    args = ap.parse_args(argv)
    s = load_settings()
    out: dict[str, Any] = {"bench": "watchlist"}
    if not args.cover_only:
        out.update(accuracy(args, s))
    if not args.no_cover:
        out["cover"] = uvloop.run(cover(args, s))  # the loop the service runs on
        executor.shutdown()
    print(json.dumps(out, separators=(",", ":")))
    cover_ok = args.no_cover or out["cover"]["no_significant_difference"]
    return 0 if cover_ok else 1


async def cover(args: argparse.Namespace, s: Settings) -> dict[str, object]:
    configure_logging("json", s.logging.log_level)
    quiet_logs()
    executor.configure()
    engine = FaceEngine.load(s)
    err("cover: latency of hits, random referrals and proceeds over HTTP")
    return await watchlist_cover.run(s, engine, args.cover_hits, args.cover_others, args.cover_share,
                                     args.cover_alpha)


def accuracy(args: argparse.Namespace, s: Settings) -> dict[str, object]:
    t0 = time.perf_counter()
    f = extract(s, Path(s.faces_dir) / "lfw-train", not args.no_cache)
    vecs = f.flip if s.engine.flip_average else f.plain
    usable = passes(f, QualityThresholds.from_settings(s))

    main_list = screen(f, vecs, usable, args.subjects, args.seeds)
    chosen = choose(main_list, args.alarm_budget)
    configured = s.watchlist.watchlist_threshold
    baseline = at(main_list, s.decisions.e_channel_threshold)
    result = at(main_list, configured)
    misses_ratio = result["miss_rate"] / baseline["miss_rate"] if baseline["miss_rate"] else None
    alarms_ratio = (result["false_alarm_rate"] / baseline["false_alarm_rate"]
                    if baseline["false_alarm_rate"] else None)
    err(f"watchlist of {args.subjects}, {args.seeds} lists: {result['mated']} mated, {result['non_mated']} non-mated")
    err(f"  at watchlist_threshold {configured}: hit {result['hit_rate']:.4f}  false alarms "
        f"{result['false_alarm_rate']:.4f}")
    err(f"  baseline at e_channel_threshold {s.decisions.e_channel_threshold}: "
        f"hit {baseline['hit_rate']:.4f}  false alarms "
        f"{baseline['false_alarm_rate']:.4f}")
    if misses_ratio is not None:
        err(f"  misses x{misses_ratio:.2f} and false alarms x{alarms_ratio or 0:.2f} of the passenger operating point")
    err(f"  lowest threshold within the {args.alarm_budget:.2%} alarm budget: {chosen}"
        + ("" if abs(chosen - configured) < 1e-9 else "  <- differs from the configured default"))

    table = [at(main_list, float(t)) for t in GRID if 0.25 <= t <= 0.45 and round(t * 1000) % 10 == 0]
    err("\n  threshold    hit   any_alarm  false_alarm")
    for row in table:
        err(f"  {row['threshold']:9.3f}  {row['hit_rate']:.4f}  {row['any_alarm_rate']:.4f}     "
            f"{row['false_alarm_rate']:.5f}")
    sizes = {}
    for label, n in (("100", 100), ("all", None)):
        sizes[label] = at(screen(f, vecs, usable, n, args.seeds), configured)
        err(f"  list of {sizes[label]['subjects']}: hit {sizes[label]['hit_rate']:.4f}  false alarms "
            f"{sizes[label]['false_alarm_rate']:.5f}")

    return {"photos": len(f.paths), "faces_found": int(f.found.sum()),
           "alarm_budget": args.alarm_budget, "chosen_threshold": chosen, "configured_threshold": configured,
           "at_threshold": result, "baseline_e_channel_threshold": baseline,
           "misses_vs_baseline": round(misses_ratio, 3) if misses_ratio is not None else None,
           "false_alarms_vs_baseline": round(alarms_ratio, 3) if alarms_ratio is not None else None,
           "other_list_sizes": sizes, "table": table, "seconds": round(time.perf_counter() - t0, 1)}


if __name__ == "__main__":
    raise SystemExit(main())
