"""Entry point of ``make bench-accuracy``: service-level accuracy first, then calibration, then model-level.

    .venv/bin/python -m ops.bench.accuracy [--seeds 10] [--details] [--tta] [--no-cache] [--extract-only]

Prints the tables to stderr and ends with one line of JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import structlog

from flighttoken.settings import load_settings
from ops.bench.accuracy import calibrate, model_level, service
from ops.bench.accuracy.cohort import Cohort
from ops.bench.accuracy.features import err, extract, service_variant


def _up(x: float) -> float:
    """Rounded up to 3 decimals: rounding must not make a bound less conservative."""
    return math.ceil(x * 1000 - 1e-9) / 1000


def main(argv: list[str] | None = None) -> int:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout: the result line only
    ap = argparse.ArgumentParser(description="Open-set 1:N accuracy on LFW through the service's decisions")
    ap.add_argument("--seeds", type=int, default=10, help="random N=420 galleries pooled (model-level line)")
    ap.add_argument("--margin", type=float, default=0.05, help="top1-top2 margin shown in the --details table")
    ap.add_argument("--details", action="store_true", help="the model-level side studies too")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--extract-only", action="store_true")
    ap.add_argument("--tta", action="store_true", help="embed the multi-crop views if not cached (~25 min)")
    args = ap.parse_args(argv)
    s = load_settings()
    root = Path(s.faces_dir) / "lfw-train"
    t0 = time.perf_counter()
    f = extract(s, root, not args.no_cache)
    if args.extract_only:
        return 0
    c = Cohort.build(f, f.vecs[service_variant(s)])
    cal, tails = calibrate.run(c, s)
    svc = service.measure(c, s, tails)
    nist, searches = model_level.nist(f, s, args, root)
    if args.details:
        model_level.details(f, s, args, nist, searches)

    bound = tails["all"][1]
    recommended = {"impostor_tail_score_1e6": _up(bound.score_1e6), "impostor_tail_decade": _up(bound.decade),
                   "watchlist_threshold": _up(cal["watchlist"]["recommended_threshold"])}
    rows = [r for r in svc["table"] if r["params"] == "bound"]
    headline = {f"{r['touchpoint']}_{r['n']}": {
        "gallery": r["gallery"], "t": r["threshold_mean"], "fta": r["fta"], "fnir": r["fnir"],
        "fpir": r["fpir"]["fpir"], "strangers": f"{r['fpir']['accepted']}/{r['fpir']['searches']}",
        "wrong_person": r["wrong_person"], "met": r["met"]} for r in rows}
    met = {"service_level": all(r["met"] for r in rows),
           "service_fpir": all(r["fpir"]["fpir"] <= r["fpir_target"] for r in rows),
           "service_fnir": all(r["fnir"] <= r["fnir_target"] for r in rows),
           "service_wrong_person_0": all(r["wrong_person_not_aliases"] == 0 for r in rows),
           "calibration_every_fold_every_n": cal["validation"]["met_every_fold_every_n"]["bound"],
           "watchlist_every_fold": cal["watchlist"]["met_every_fold"]}
    err(f"\nheadline (held-out folds, proposed tail bound): {json.dumps(headline)}")
    err(f"model-level (second line): FNIR at FPIR {0.003} N=420 {nist['nist_line']['fnir_at_fpir_0.003_n420']:.4f}, "
        f"N=all {nist['nist_line']['fnir_at_fpir_0.003_n_all']:.4f}")
    err(f"met: {met}\nrecommended settings: {recommended} (now {s.decisions.impostor_tail_score_1e6}, "
        f"{s.decisions.impostor_tail_decade}, {s.watchlist.watchlist_threshold})")
    out = {"bench": "accuracy", "headline": headline, "met": met, "recommended_settings": recommended,
           "fte": svc["fte"], "service_level": svc, "calibration": cal, "model_level": nist,
           "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
