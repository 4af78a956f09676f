"""1:1 verification accuracy on LFW: the threshold for re-enrolment and the chip-photo check.

    .venv/bin/python -m ops.bench.verification [--seed 0] [--per-identity 10] [--no-cache]

Templates: the service's own (``ops.bench.common.lfw_templates``: ``engine.analyse_sync``, the
vector an enrolment stores), only photos passing the quality gates, as enrolment accepts them.

Protocol: LFW identities are split at random into two disjoint halves. Two kinds of pairs in each:

* photos: genuine pairs are all pairs of photos of one identity (at most ``--per-identity`` photos
  each, so a few heavily photographed people do not make up the genuine set), impostor pairs every
  pair of photos of two different identities;
* kiosk templates: enrolment stores the normalised mean of its captures, and means score impostors
  higher (identity traits stay, photo noise averages out). Per identity with 4 photos, an enrolled
  template (mean of 2) and a re-enrolment one (mean of the next 2): genuine within an identity,
  impostor across identities (fewer pairs: a coarser estimate).

The threshold is fitted on the FIT half as the lowest score (rounded up to 0.001) with FMR <= 1e-4
on both kinds, then validated on the other half: observed FMR and FNMR there; the same for the
service's ``verify_threshold``. Baseline in the same run: the chip check's former
``chip_match_threshold`` default, 0.35, on the same validation pairs.

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
                   captures: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Kiosk templates (the normalised mean of ``captures`` photos, as enrolment makes them): per
    identity with 2 x ``captures`` photos, an enrolled and a re-enrolment template. Genuine: the two
    of one identity; impostor: an enrolled one against every other identity's re-enrolment."""
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
    ap = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
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
    fit_kg, fit_ki = averaged_pairs(lfw.vectors, lfw.identity, fit_rows)
    val_kg, val_ki = averaged_pairs(lfw.vectors, lfw.identity, val_rows)
    by_kind = {"photos": fit_threshold(fit_i, TARGET_FMR), "kiosk_templates": fit_threshold(fit_ki, TARGET_FMR)}
    t = max(by_kind.values())
    fit = {"photos": rates(fit_g, fit_i, t), "kiosk_templates": rates(fit_kg, fit_ki, t)}
    val = {"photos": rates(val_g, val_i, t), "kiosk_templates": rates(val_kg, val_ki, t)}
    baseline = {"photos": rates(val_g, val_i, OLD_CHIP_THRESHOLD),
                "kiosk_templates": rates(val_kg, val_ki, OLD_CHIP_THRESHOLD)}
    service = {"photos": rates(val_g, val_i, s.decisions.verify_threshold),
               "kiosk_templates": rates(val_kg, val_ki, s.decisions.verify_threshold)}
    service_fit = {"photos": rates(fit_g, fit_i, s.decisions.verify_threshold),
                   "kiosk_templates": rates(fit_kg, fit_ki, s.decisions.verify_threshold)}
    err(f"fitted for FMR <= {TARGET_FMR:g} on the fit half: photos {by_kind['photos']:.3f}, kiosk templates "
        f"{by_kind['kiosk_templates']:.3f} -> t = {t:.3f}")
    for label, block in (("fit half", fit), ("validation half", val), ("baseline 0.35 (validation)", baseline),
                         (f"service verify_threshold {s.decisions.verify_threshold} (fit)", service_fit),
                         (f"service verify_threshold {s.decisions.verify_threshold} (validation)", service)):
        for kind, r in block.items():
            err(f"{label:42} {kind:15} t={r['threshold']:.3f} FMR {r['fmr']:.2e} ({r['false_matches']}/"
                f"{r['impostor_pairs']})  FNMR {r['fnmr']:.4f} (of {r['genuine_pairs']})")
    met = all(r["fmr"] <= TARGET_FMR for r in service.values())
    err(f"service verify_threshold {s.decisions.verify_threshold}: {'meets' if met else 'MISSES'} FMR <= {TARGET_FMR:g}"
        " on the validation half")
    v, b = val["photos"], baseline["photos"]
    ratio = {"fnmr_vs_baseline": round(v["fnmr"] / b["fnmr"], 3) if b["fnmr"] else None,
             "fmr_vs_baseline": round(v["fmr"] / b["fmr"], 3) if b["fmr"] else None}
    err(f"fitted vs baseline on validation photos: FNMR x{ratio['fnmr_vs_baseline']}, FMR x{ratio['fmr_vs_baseline']}")
    result = {"bench": "verification", "target_fmr": TARGET_FMR, "seed": args.seed,
              "per_identity": args.per_identity, "identities": len(np.unique(lfw.identity[lfw.usable])),
              "photos_usable": int(lfw.usable.sum()), "fitted_by_kind": by_kind, "threshold": t, "fit": fit,
              "validation": val, "baseline_0.35_validation": baseline,
              "service": {"verify_threshold": s.decisions.verify_threshold, "validation": service, "fit": service_fit},
              "ratio_photos": ratio, "met": met, "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
