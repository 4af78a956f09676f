"""1:1 verification accuracy on LFW: the threshold for re-enrolment and the chip-photo check.

    .venv/bin/python -m ops.bench.verification [--seed 0] [--per-identity 10] [--no-cache]

Templates: the service's own (``ops.bench.common.lfw_templates``: ``engine.analyse_sync``, the
vector an enrolment stores), only photos passing the quality gates, as enrolment accepts them.

Protocol: LFW identities are split at random into two disjoint halves. In each half, genuine pairs
are all pairs of photos of one identity (at most ``--per-identity`` photos each, so a few heavily
photographed people do not make up the genuine set), impostor pairs are every pair of photos of two
different identities. The threshold is fitted on the FIT half as the lowest score (rounded up to
0.001) with FMR <= 1e-4, then validated on the other half: observed FMR and FNMR there, on single
photos and on kiosk-like templates (the mean of three captures, enrolled vs. re-enrolment: few
pairs, a coarse check on the templates the service compares). Baseline in the same run:
``chip_match_threshold``'s old default, 0.35, on the same validation pairs.

Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import structlog

from flighttoken.settings import load_settings
from ops.bench.common import err, lfw_templates

TARGET_FMR = 1e-4
OLD_CHIP_THRESHOLD = 0.35
BLOCK = 2048


def split(identity: np.ndarray, usable: np.ndarray, seed: int, per_identity: int) -> list[np.ndarray]:
    """Photo rows of two disjoint halves of the identities (usable photos only, capped per identity)."""
    rng = np.random.default_rng(seed)
    people = np.unique(identity[usable])
    rng.shuffle(people)
    halves = []
    for members in (people[: len(people) // 2], people[len(people) // 2:]):
        rows = []
        for p in members:
            photos = np.flatnonzero(usable & (identity == p))
            if len(photos) > per_identity:
                photos = np.sort(rng.choice(photos, per_identity, replace=False))
            rows.append(photos)
        halves.append(np.concatenate(rows))
    return halves


def pair_scores(vectors: np.ndarray, identity: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) scores of every unordered pair of ``rows``."""
    v, ident = vectors[rows], identity[rows]
    genuine, impostor = [], []
    for start in range(0, len(rows), BLOCK):
        block = v[start:start + BLOCK] @ v.T
        i = np.arange(start, min(start + BLOCK, len(rows)))[:, None]
        j = np.arange(len(rows))[None, :]
        upper = j > i  # each unordered pair once, never a photo with itself
        same = ident[i] == ident[j]
        genuine.append(block[upper & same])
        impostor.append(block[upper & ~same])
    return np.concatenate(genuine), np.concatenate(impostor)


def averaged_pairs(vectors: np.ndarray, identity: np.ndarray, rows: np.ndarray,
                   captures: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Kiosk-like templates (the normalised mean of ``captures`` photos, as enrolment makes them):
    per identity with 2 x ``captures`` photos, an enrolled and a re-enrolment template. Genuine: the
    two of one identity; impostor: an enrolled one against every other identity's re-enrolment."""
    enrolled, live = [], []
    for p in np.unique(identity[rows]):
        photos = rows[identity[rows] == p]
        if len(photos) < 2 * captures:
            continue
        for out, part in ((enrolled, photos[:captures]), (live, photos[captures:2 * captures])):
            m = vectors[part].mean(axis=0)
            out.append(m / np.linalg.norm(m))
    e, v = np.stack(enrolled), np.stack(live)
    scores = e @ v.T
    same = np.eye(len(e), dtype=bool)
    return scores[same], scores[~same]


def fit_threshold(impostor: np.ndarray, target: float) -> float:
    """Lowest threshold, rounded up to 0.001, at which at most ``target`` of impostor pairs score >= it."""
    allowed = math.floor(target * len(impostor))
    top = np.sort(impostor)[::-1]
    # Just above the (allowed + 1)-th best impostor score: that one and every lower one are refused.
    t = math.ceil((float(top[allowed]) + 1e-6) * 1000) / 1000
    assert (impostor >= t).sum() <= allowed
    return t


def rates(genuine: np.ndarray, impostor: np.ndarray, t: float) -> dict[str, float | int]:
    false_matches = int((impostor >= t).sum())
    return {"threshold": t, "fmr": round(false_matches / len(impostor), 7), "false_matches": false_matches,
            "fnmr": round(float((genuine < t).mean()), 5), "genuine_pairs": len(genuine),
            "impostor_pairs": len(impostor)}


def main(argv: list[str] | None = None) -> int:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="identity split")
    ap.add_argument("--per-identity", type=int, default=10, help="most photos of one identity in the pairs")
    ap.add_argument("--no-cache", action="store_true")
    args = ap.parse_args(argv)
    s = load_settings()
    t0 = time.perf_counter()
    lfw = lfw_templates(s, use_cache=not args.no_cache)
    fit_rows, val_rows = split(lfw.identity, lfw.usable, args.seed, args.per_identity)
    fit_g, fit_i = pair_scores(lfw.vectors, lfw.identity, fit_rows)
    val_g, val_i = pair_scores(lfw.vectors, lfw.identity, val_rows)
    t = fit_threshold(fit_i, TARGET_FMR)
    fit, val = rates(fit_g, fit_i, t), rates(val_g, val_i, t)
    baseline = rates(val_g, val_i, OLD_CHIP_THRESHOLD)
    averaged = rates(*averaged_pairs(lfw.vectors, lfw.identity, val_rows), t)
    service = {"verify_threshold": s.verify_threshold, **rates(val_g, val_i, s.verify_threshold)}
    err(f"fit half:        t = {t:.3f}  FMR {fit['fmr']:.2e} ({fit['false_matches']}/{fit['impostor_pairs']})"
        f"  FNMR {fit['fnmr']:.4f} ({fit['genuine_pairs']} genuine pairs)")
    err(f"validation half: t = {t:.3f}  FMR {val['fmr']:.2e} ({val['false_matches']}/{val['impostor_pairs']})"
        f"  FNMR {val['fnmr']:.4f} ({val['genuine_pairs']} genuine pairs)")
    err(f"3-capture templates (validation): FMR {averaged['fmr']:.2e} ({averaged['false_matches']}/"
        f"{averaged['impostor_pairs']})  FNMR {averaged['fnmr']:.4f} ({averaged['genuine_pairs']} genuine pairs)")
    err(f"baseline 0.35 (validation): FMR {baseline['fmr']:.2e}  FNMR {baseline['fnmr']:.4f}")
    err(f"service verify_threshold {s.verify_threshold}: FMR {service['fmr']:.2e}  FNMR {service['fnmr']:.4f}"
        f" ({'meets' if service['fmr'] <= TARGET_FMR else 'MISSES'} FMR <= {TARGET_FMR:g})")
    ratio = {"fnmr_vs_baseline": round(val["fnmr"] / baseline["fnmr"], 3) if baseline["fnmr"] else None,
             "fmr_vs_baseline": round(val["fmr"] / baseline["fmr"], 3) if baseline["fmr"] else None}
    err(f"fitted vs baseline on validation: FNMR x{ratio['fnmr_vs_baseline']}, FMR x{ratio['fmr_vs_baseline']}")
    result = {"bench": "verification", "target_fmr": TARGET_FMR, "seed": args.seed,
              "per_identity": args.per_identity, "identities": len(np.unique(lfw.identity[lfw.usable])),
              "photos_usable": int(lfw.usable.sum()), "threshold": t, "fit": fit, "validation": val,
              "validation_3_capture_templates": averaged,
              "baseline_0.35_validation": baseline, "service": service, "ratio": ratio,
              "met": service["fmr"] <= TARGET_FMR, "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
