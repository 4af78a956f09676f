"""The model-level figures, second to the service-level ones: FNIR at FPIR 0.003 (NIST FRVT Part 7's
operating point, threshold set per gallery draw) for the service's templates and a few variants at
N = 420 and N = all multi-photo identities; with ``--details`` the older side studies (threshold
table, watchlist operating point, quality statistics, decision variants, in-sample tail by size).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from flighttoken.settings import Settings
from ops.bench.accuracy.features import Features, err, service_variant
from ops.bench.accuracy.protocol import (
    GALLERY_N,
    NIST_FPIR,
    Searches,
    at_fpir,
    at_threshold,
    print_table,
    run_protocol,
    table,
)
from ops.bench.accuracy.sizes import fpir_by_size, impostor_tail, label_issues, tail_report, thresholds_by_size
from ops.bench.accuracy.tta import tta_templates
from ops.bench.accuracy.variants import decision_variants, gate_effect, gating_counted, quality_report

WATCHLIST_FPIR = 0.01

# The former match_threshold setting (removed: nothing in the service read it), kept as the fixed
# reference point of the model-level table so the figures stay comparable with earlier runs.
REFERENCE_THRESHOLD = 0.35


def nist(f: Features, s: Settings, args: argparse.Namespace, root: Path) -> tuple[dict[str, Any], dict]:
    """FNIR at FPIR 0.003 per variant and gallery scale; the searches, for ``details``."""
    gate = f.capture_ok()
    sv = service_variant(s)
    variants = {
        "baseline": ("plain", "first", None),
        "flip": ("flip", "first", None),
        f"service_{sv}_probe_gating": (sv, "first", gate),
        f"service_{sv}_enrol_quality": (sv, "best", None),
        f"service_{sv}_enrol_quality_probe_gating": (sv, "best", gate),
    }
    vec_sets = dict(f.vecs)
    tta = tta_templates(s, root, not args.no_cache, args.tta)
    if tta is not None:
        vec_sets.update(tta)
        variants.update({name: (name, "first", None) for name in tta})
    results: dict[str, Any] = {"bench": "accuracy", "photos": len(f.paths), "identities": len(f.names),
                               "faces_found": int(f.found.sum()), "gallery_draws": args.seeds,
                               "service_variant": sv,
                               "detector_input_size": s.models.detector_input_size,
                               "probes_gated_out": round(float(1 - gate[f.found].mean()), 4),
                               "tta": "measured" if tta is not None else "not run (--tta)"}
    searches: dict[tuple[str, str], Searches] = {}
    for scale, n_gallery in (("n420", GALLERY_N), ("n_all", None)):
        block = {}
        for name, (variant, enrol, probe_ok) in variants.items():
            sr = run_protocol(f, vec_sets[variant], n_gallery, args.seeds, enrol, probe_ok, gate)
            searches[(scale, name)] = sr
            row: dict[str, Any] = at_fpir(sr)
            row["at_match_threshold"] = at_threshold(sr, REFERENCE_THRESHOLD)
            row["enrol_failures"] = sr.enrol_failures
            block[name] = row
            err(f"{scale:6} {name:44} FNIR@FPIR{NIST_FPIR} = {row['fnir']:.4f} "
                f"[{row['fnir_min']:.4f}-{row['fnir_max']:.4f}] t={row['threshold']:.3f} "
                f"wrong={row['wrong_accepts']} | at {REFERENCE_THRESHOLD}: "
                f"FNIR {row['at_match_threshold']['fnir']:.4f} "
                f"FPIR {row['at_match_threshold']['fpir']:.4f}")
        results[scale] = block

    svc_name = {"plain": "baseline"}.get(sv, sv)
    results["nist_line"] = {"variant": svc_name, "fnir_at_fpir_0.003_n420": results["n420"][svc_name]["fnir"],
                            "fnir_at_fpir_0.003_n_all": results["n_all"][svc_name]["fnir"],
                            "threshold_set_per_draw": True, "quality_gates": "not applied"}
    return results, searches


def details(f: Features, s: Settings, args: argparse.Namespace, results: dict[str, Any],
            searches: dict[tuple[str, str], Searches]) -> None:
    """The side studies, added to ``results``."""
    sv = service_variant(s)
    gate = f.capture_ok()
    svc_name = {"plain": "baseline"}.get(sv, sv)
    svc = searches[("n420", svc_name)]
    grid = sorted({round(x, 3) for x in np.arange(0.25, 0.50, 0.01)} | {REFERENCE_THRESHOLD})
    rows = table(svc, grid, args.margin)
    print_table(f"threshold table, N={GALLERY_N}, service variant {sv} ({args.seeds} draws pooled)", rows)
    results["threshold_table"] = rows
    # The service default: the lowest table threshold keeping pooled FPIR <= 0.003 at N = 420.
    recommended = next((r["threshold"] for r in rows if r["fpir"] <= NIST_FPIR), None)
    err(f"recommended match_threshold (lowest with FPIR <= {NIST_FPIR} at N={GALLERY_N}): {recommended}")
    results["service"] = {"variant": sv, "match_threshold": REFERENCE_THRESHOLD,
                          "recommended_match_threshold": recommended,
                          "n420": at_threshold(svc, REFERENCE_THRESHOLD),
                          "n_all": at_threshold(searches[("n_all", svc_name)], REFERENCE_THRESHOLD)}

    # Watchlist (persons of interest; every alarm is reviewed by an officer): accept up to 1 % of
    # travellers raising an alarm to miss as few listed persons as possible.
    wl = at_fpir(svc, WATCHLIST_FPIR)
    wl_at = at_threshold(svc, wl["threshold"])
    results["watchlist_model_level"] = {"threshold": wl["threshold"], "hit_rate": round(1 - wl["fnir"], 5),
                            "false_alarm_rate": wl_at["fpir"], "target_false_alarm_rate": WATCHLIST_FPIR,
                            "rank1_ceiling": round(float(svc.mated_correct.mean()), 5), "gallery": GALLERY_N}
    err(f"\nwatchlist: threshold {wl['threshold']} hit rate {1 - wl['fnir']:.4f} false alarms {wl_at['fpir']:.4f}")

    results["quality"] = quality_report(f, s)
    results["quality_gate_effect"] = gate_effect(f, f.vecs[sv], min(args.seeds, 3), s)
    results["lfw_label_issues"] = label_issues(f, f.vecs[sv])
    err("\nquality (LFW):", json.dumps(results["quality"], indent=None))
    err("gate effect:", json.dumps(results["quality_gate_effect"]))

    err("\n-- decision variants (issue 3): cohort normalisation and quality correction --")
    results["decision_variants"] = decision_variants(
        {"n420": svc, "n_all": searches[("n_all", svc_name)]}, f)
    results["quality_gating_counted"] = gating = gating_counted(f, f.vecs[sv], args.seeds, gate)
    err(f"probe gating at N={GALLERY_N}: none {gating['no_gating']['fnir']:.4f}, refused as miss "
        f"{gating['refused_as_miss']['fnir']:.4f}, refused then retaken {gating['refused_then_retaken']['fnir']:.4f}")

    err("\n-- thresholds by gallery size (issue 8) --")
    tail = impostor_tail(f, f.vecs[sv])
    results["impostor_tail"] = tail_report(tail, s, f)
    results["fpir_by_gallery_size"], runs = fpir_by_size(f, f.vecs[sv], args.seeds, gate, tail, s)
    results["threshold_by_gallery_size"] = thresholds_by_size(s, runs)

    n420 = results["n420"]
    assert isinstance(n420, dict)
    # Honest candidates only: every probe is counted (gated-out probes dropped from both sides
    # assume a successful retake, so those variants are reported but not eligible), and no decision
    # variant raising FPIR on the poorest third of captures by more than a quarter (the norm
    # correction does: it lowers the bar for exactly the captures least able to tell people apart).
    decisions = results["decision_variants"]
    assert isinstance(decisions, dict)
    ceiling = 1.25 * float(decisions["raw_s1_service"]["fpir_low_norm_third"])
    honest = {k: v["fnir"] for k, v in n420.items() if "probe_gating" not in k}
    honest |= {f"decision_{k}": v["n420"]["fnir"] for k, v in decisions.items() if v["fpir_low_norm_third"] <= ceiling}
    honest["probe_gating_refused_as_miss"] = gating["refused_as_miss"]["fnir"]
    best = min(honest, key=lambda k: honest[k])
    optimistic = min(n420, key=lambda k: n420[k]["fnir"])
    service = n420[svc_name]["fnir"]
    results["model_level_best"] = {"fnir_at_fpir_0.003_n420_max": 0.012, "baseline": n420["baseline"]["fnir"],
                         "service": service, "met": service <= 0.012, "best": honest[best], "best_variant": best,
                         "best_with_retake_assumption": n420[optimistic]["fnir"],
                         "best_with_retake_assumption_variant": optimistic}
    err(f"\ntarget FNIR <= 0.012 at FPIR 0.003, N={GALLERY_N}: the service {service:.4f} "
        f"({'met' if service <= 0.012 else 'not met'}); best counted honestly {honest[best]:.4f} ({best}); "
        f"with the retake assumption {n420[optimistic]['fnir']:.4f} ({optimistic})")
