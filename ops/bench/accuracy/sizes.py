"""Model-level study of thresholds by gallery size (issue 8, ``--details``): the in-sample impostor tail
over every pair, measured FPIR at N = 420 / 1,200 / 3,654 against 1 - (1 - p(t))^N, the service's
thresholds at N = 420 / 3,000 / 42,000, and LFW's highest-scoring different-name pairs.
Superseded for the settings by ``calibrate`` (cross-validated, upper bound); kept as a second view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flighttoken.decisions.match import impostor_rate, predicted_fpir, size_threshold, threshold_for
from flighttoken.devices.model import DeviceKind
from flighttoken.settings import Settings
from ops.bench.accuracy.features import Features, err
from ops.bench.accuracy.protocol import NIST_FPIR, Searches, at_fpir, at_threshold, print_table, run_protocol

# --- thresholds by gallery size (issue 8) -------------------------------------------------------


@dataclass
class Tail:
    edges: np.ndarray  # bin edges of impostor scores
    survival: np.ndarray  # share of impostor pairs scoring >= edges[i]
    pairs: int
    score_1e6: float  # fitted: p(t) = 10^(-6 - (t - score_1e6) / decade)
    decade: float
    high: list[tuple[float, int, int]]  # (score, identity a, identity b) of every pair >= HIGH_PAIR
    suspects: dict[frozenset[int], float]  # name pairs whose best pair reaches SUSPECT_SCORE

    def p(self, t: float, clean: bool = False) -> float:
        """Measured share of impostor pairs >= t; ``clean`` sets suspect name pairs aside (t >= HIGH_PAIR)."""
        p = float(self.survival[min(np.searchsorted(self.edges, t), len(self.survival) - 1)])
        if clean and t >= HIGH_PAIR:
            p -= sum(1 for sc, a, b in self.high if sc >= t and frozenset((a, b)) in self.suspects) / self.pairs
        return p

    def suspect_identities(self) -> np.ndarray:
        return np.array(sorted({i for pair in self.suspects for i in pair}), dtype=np.int64)


TAIL_FIT = (1e-5, 1e-3)  # p range fitted: below it LFW's label errors and duplicates flatten the tail
HIGH_PAIR = 0.30  # impostor pairs kept individually (a few thousand)
# A pair of names with a photo pair this close is, on LFW, one person under two names, one photo
# filed twice, two people in one photo, or identical twins: the fitted tail puts a true impostor
# pair there at ~1.4e-8 (0.4 of the 27 M pairs; LFW has 20). Reported; set aside in *clean* FPIR only.
SUSPECT_SCORE = 0.50


def impostor_tail(f: Features, vecs: np.ndarray) -> Tail:
    """Every pair of photos of different identities (27 M on lfw-train): the per-comparison tail."""
    idx = np.flatnonzero(f.found)
    v, ids = vecs[idx], f.identity[idx]
    edges = np.round(np.arange(-1.0, 1.0005, 0.001), 3)
    hist = np.zeros(len(edges), np.int64)
    pairs = 0
    high: list[tuple[float, int, int]] = []
    for start in range(0, len(idx), 1024):
        block = v[start:start + 1024] @ v.T
        rows = np.arange(start, min(start + 1024, len(idx)))
        keep = (ids[rows][:, None] != ids[None, :]) & (np.arange(len(idx))[None, :] > rows[:, None])
        x = block[keep]
        pairs += x.size
        for r, c in zip(*np.nonzero(keep & (block >= HIGH_PAIR)), strict=True):
            high.append((float(block[r, c]), int(ids[rows[r]]), int(ids[c])))
        hist += np.bincount(np.clip(np.floor((x + 1.0) * 1000 + 1e-6).astype(np.int64), 0, len(edges) - 1),
                            minlength=len(edges))
    survival = hist[::-1].cumsum()[::-1] / pairs
    fit = (survival >= TAIL_FIT[0]) & (survival <= TAIL_FIT[1])
    slope, intercept = np.polyfit(edges[fit], np.log10(survival[fit]), 1)
    suspects: dict[frozenset[int], float] = {}
    for score, a, b in high:
        if score >= SUSPECT_SCORE:
            suspects[frozenset((a, b))] = max(score, suspects.get(frozenset((a, b)), 0.0))
    return Tail(edges, survival, pairs, float((-6.0 - intercept) / slope), float(-1.0 / slope), high, suspects)


def tail_report(tail: Tail, s: Settings, f: Features) -> dict[str, object]:
    grid = [round(x, 2) for x in np.arange(0.20, 0.61, 0.04)]
    rows = [{"t": t, "p_measured": float(f"{tail.p(t):.3e}"), "p_measured_clean": float(f"{tail.p(t, True):.3e}"),
             "p_fit": float(f"{impostor_rate(t, tail.score_1e6, tail.decade):.3e}"),
             "pairs_at_or_above": round(tail.p(t) * tail.pairs)} for t in grid]
    print_table(f"impostor tail: {tail.pairs:,} pairs; fit log10 p linear in t over p in {TAIL_FIT}", rows)
    err(f"fit: p(t) = 10^(-6 - (t - {tail.score_1e6:.4f}) / {tail.decade:.4f}); settings use "
        f"{s.decisions.impostor_tail_score_1e6} / {s.decisions.impostor_tail_decade}")
    suspects = [{"score": round(sc, 3), "names": sorted(f.names[i] for i in pair)}
                for pair, sc in sorted(tail.suspects.items(), key=lambda kv: -kv[1])]
    err(f"name pairs scoring >= {SUSPECT_SCORE} (label errors, duplicates, two-person photos, twins): "
        + ", ".join(f"{'/'.join(x['names'])} {x['score']}" for x in suspects))
    return {"pairs": tail.pairs, "fit_p_range": list(TAIL_FIT), "fit_score_1e6": round(tail.score_1e6, 4),
            "fit_decade": round(tail.decade, 4), "settings_score_1e6": s.decisions.impostor_tail_score_1e6,
            "settings_decade": s.decisions.impostor_tail_decade, "rows": rows, "suspect_score": SUSPECT_SCORE,
            "suspect_name_pairs": suspects}


# Gallery sizes with measured FPIR: (multi-photo identities enrolled, single-photo distractors added).
MEASURED_SIZES = {"n420": (420, 0), "n1200": (592, 608), "n3654": (800, 2854)}


def fpir_by_size(f: Features, vecs: np.ndarray, seeds: int, gate: np.ndarray, tail: Tail,
                 s: Settings) -> tuple[dict[str, Any], dict[str, tuple[Searches, Searches, np.ndarray]]]:
    """Measured FPIR at the model's t(N) against the prediction 1 - (1 - p(t))^N (model and measured p).

    ``*_clean`` figures leave out non-mated searches by the suspect identities (``SUSPECT_SCORE``):
    with every single-photo identity enrolled, a name filed twice turns a mated search into a
    "non-mated" one that scores 0.6-0.99 whatever the threshold.
    """
    out: dict[str, Any] = {}
    runs: dict[str, tuple[Searches, Searches, np.ndarray]] = {}
    suspect = np.zeros(len(f.names), bool)
    suspect[tail.suspect_identities()] = True
    for name, (n_multi, n_single) in MEASURED_SIZES.items():
        sr = run_protocol(f, vecs, n_multi, seeds, "best", None, gate, n_single)
        clean = sr.keep_non_mated(~suspect[f.identity[sr.non_probes]])
        runs[name] = (sr, clean, suspect[f.identity[sr.mated_probes]])
        n = round(float(np.mean(sr.gallery_sizes)))
        row: dict[str, Any] = {"gallery": n, "non_mated_searches": len(sr.non_top1),
                               "non_mated_searches_clean": len(clean.non_top1),
                               "mated_searches": len(sr.mated_top1),
                               "threshold_at_fpir_0.003_measured": at_fpir(sr)["threshold"],
                               "threshold_at_fpir_0.003_measured_clean": at_fpir(clean)["threshold"],
                               "threshold_at_fpir_0.003_model": round(
                                   size_threshold(n, NIST_FPIR, s.decisions.impostor_tail_score_1e6,
                                                  s.decisions.impostor_tail_decade), 4)}
        for target in (NIST_FPIR, 0.001):
            t = size_threshold(n, target, s.decisions.impostor_tail_score_1e6, s.decisions.impostor_tail_decade)
            row[f"fpir_{target}"] = {
                "t": round(t, 4), "fpir_measured": round(float((sr.non_top1 >= t).mean()), 5),
                "fpir_measured_clean": round(float((clean.non_top1 >= t).mean()), 5),
                "fpir_predicted_model": target,
                "fpir_predicted_measured_p": round(1 - (1 - tail.p(t)) ** n, 5),
                "fpir_predicted_measured_p_clean": round(1 - (1 - tail.p(t, True)) ** n, 5),
                "fnir": at_threshold(sr, t)["fnir"]}
        out[name] = row
        a, b = row[f"fpir_{NIST_FPIR}"], row["fpir_0.001"]
        err(f"FPIR vs N: N={n:5} t(0.003)={a['t']:.3f} measured {a['fpir_measured']:.4f} clean "
            f"{a['fpir_measured_clean']:.4f} (measured p predicts {a['fpir_predicted_measured_p_clean']:.4f}) | "
            f"t(0.001)={b['t']:.3f} measured {b['fpir_measured']:.4f} clean {b['fpir_measured_clean']:.4f} | "
            f"threshold at FPIR 0.003: model {row['threshold_at_fpir_0.003_model']}, measured "
            f"{row['threshold_at_fpir_0.003_measured']} clean {row['threshold_at_fpir_0.003_measured_clean']}")
    return out, runs


THRESHOLD_SIZES = (420, 3000, 42_000)


def thresholds_by_size(s: Settings, runs: dict[str, tuple[Searches, Searches, np.ndarray]]) -> list[dict[str, object]]:
    """The service's decision thresholds (``decisions.match.threshold_for``) at N = 420 / 3,000 / 42,000, with
    FNIR measured under the full decision (threshold and margin) on the nearest LFW gallery at or
    below that size: rank-1 errors grow with N, so the 42,000 figure is a lower bound."""
    rows, d = [], s.decisions
    for n in THRESHOLD_SIZES:
        measured = "n420" if n <= 1000 else "n3654"
        sr, clean, mated_suspect = runs[measured]
        for kind in (DeviceKind.GATE, DeviceKind.E_CHANNEL, DeviceKind.LOUNGE):
            t = threshold_for(s, kind, n)
            accept_n = (sr.non_top1 >= t) & (sr.non_margin >= s.decisions.decision_margin)
            accept_clean = (clean.non_top1 >= t) & (clean.non_margin >= s.decisions.decision_margin)
            row = at_threshold(sr, t, s.decisions.decision_margin)
            wrong = (sr.mated_top1 >= t) & (sr.mated_margin >= s.decisions.decision_margin) & ~sr.mated_correct
            rows.append({"gallery": n, "touchpoint": kind.value, "threshold": round(t, 4),
                         "size_threshold": round(size_threshold(n, _target(s, kind), d.impostor_tail_score_1e6,
                                                                d.impostor_tail_decade), 4),
                         "target_fpir": _target(s, kind),
                         "fpir_predicted": round(predicted_fpir(t, n, s.decisions.impostor_tail_score_1e6,
                                                                s.decisions.impostor_tail_decade), 6),
                         "measured_on": measured, "fpir_measured_with_margin": round(float(accept_n.mean()), 5),
                         "fpir_clean_with_margin": round(float(accept_clean.mean()), 5),
                         "fnir_with_margin": row["fnir"], "wrong_accepts": row["wrong_accepts"],
                         "wrong_accepts_suspect_names": int((wrong & mated_suspect).sum())})
    print_table(f"decision thresholds by gallery size (margin {s.decisions.decision_margin}; FNIR/FPIR measured on the "
                "nearest LFW gallery)", rows)
    return rows


def _target(s: Settings, kind: DeviceKind) -> float:
    return {DeviceKind.GATE: s.decisions.gate_target_fpir, DeviceKind.E_CHANNEL: s.decisions.e_channel_target_fpir,
            DeviceKind.LOUNGE: s.decisions.lounge_target_fpir}[kind]


def label_issues(f: Features, vecs: np.ndarray, top: int = 12) -> list[dict[str, object]]:
    """Highest-scoring pairs of photos filed under different names: LFW label errors, duplicates and
    look-alikes that sit in the non-mated tail. Reported, not removed (see the data README)."""
    idx = np.flatnonzero(f.found)
    v = vecs[idx]
    out: list[tuple[float, int, int]] = []
    for start in range(0, len(idx), 2048):
        block = v[start:start + 2048] @ v.T
        rows = np.arange(block.shape[0])
        block[f.identity[idx[start:start + 2048]][:, None] == f.identity[idx][None, :]] = -1
        j = block.argmax(axis=1)
        out += [(float(block[r, j[r]]), int(idx[start + r]), int(idx[j[r]])) for r in rows]
    out.sort(reverse=True)
    seen: set[frozenset[int]] = set()
    pairs = []
    for score, a, b in out:
        key = frozenset((int(f.identity[a]), int(f.identity[b])))
        if key in seen:
            continue
        seen.add(key)
        pairs.append({"score": round(score, 3), "a": f.paths[a], "b": f.paths[b]})
        if len(pairs) == top:
            break
    return pairs

