"""The model-level open-set protocol (NIST FRVT Part 7 style): random galleries, pooled searches, FNIR at FPIR.

Gallery: one photo of each of N identities (N = 420, drawn from the identities with >= 2 photos, over
seeds; or all of them). Mated probes: the other photos of enrolled identities; non-mated probes:
every photo of an identity outside the gallery. A threshold is set per draw for the FPIR asked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ops.bench.accuracy.features import Features, err

NIST_FPIR = 0.003
GALLERY_N = 420

TOP_K = 16  # scores kept per search: enough for cohort normalisation over the runner-up scores


@dataclass
class Searches:
    """Results of one gallery: mated and non-mated probes, pooled over seeds."""

    mated_top1: np.ndarray  # score, -inf where the probe has no face
    mated_correct: np.ndarray  # rank-1 candidate is the mate
    mated_margin: np.ndarray  # top1 - top2
    non_top1: np.ndarray
    seeds: list[tuple[slice, slice]]  # per seed: (mated slice, non-mated slice)
    enrol_failures: int
    mated_top: np.ndarray  # (n, TOP_K) best scores, best first
    non_top: np.ndarray
    mated_probes: np.ndarray  # photo index of each search
    non_probes: np.ndarray
    gallery_sizes: list[int]

    @property
    def non_margin(self) -> np.ndarray:
        return self.non_top[:, 0] - self.non_top[:, 1]

    def rescored(self, score_fn) -> Searches:
        """The same searches with rank-1 scores replaced by ``score_fn(top, probes)`` (decision variants)."""
        mated = np.where(np.isfinite(self.mated_top1), score_fn(self.mated_top, self.mated_probes), -np.inf)
        return dataclasses.replace(self, mated_top1=mated, non_top1=score_fn(self.non_top, self.non_probes))

    def keep_non_mated(self, keep: np.ndarray) -> Searches:
        """Only the non-mated searches where ``keep`` (per search) holds; seed spans follow."""
        spans, pos = [], 0
        for ms, ns in self.seeds:
            k = int(keep[ns].sum())
            spans.append((ms, slice(pos, pos + k)))
            pos += k
        return dataclasses.replace(self, non_top1=self.non_top1[keep], non_top=self.non_top[keep],
                                   non_probes=self.non_probes[keep], seeds=spans)

    def refused(self, ok: np.ndarray) -> Searches:
        """Probes with ``ok`` false refused before the search: a miss if mated, no alarm if not."""
        return dataclasses.replace(self, mated_top1=np.where(ok[self.mated_probes], self.mated_top1, -np.inf),
                                   non_top1=np.where(ok[self.non_probes], self.non_top1, -np.inf))


def run_protocol(f: Features, vecs: np.ndarray, n_gallery: int | None, seeds: int, enrol: str,
                 probe_ok: np.ndarray | None, gate_ok: np.ndarray, n_single: int = 0) -> Searches:
    """``enrol``: "first" (the identity's first photo with a face) or "best" (best quality).

    ``n_single`` single-photo identities join the gallery as non-mated entries (larger galleries
    than the 1,184 identities with a mate allow; the rest of them stay non-mated probes).
    """
    by_id: dict[int, list[int]] = {}
    for i, ident in enumerate(f.identity):
        by_id.setdefault(int(ident), []).append(i)
    multi = sorted(i for i, photos in by_id.items() if len(photos) >= 2)
    singles = sorted(i for i, photos in by_id.items() if len(photos) == 1 and f.found[photos[0]])
    mt, mc, nt, spans, mtop, ntop, mp, npr, sizes = [], [], [], [], [], [], [], [], []
    fte = 0
    m_pos = n_pos = 0
    for seed in range(seeds if n_gallery else 1):
        rng = np.random.default_rng(seed)
        gallery_ids = sorted(rng.choice(multi, n_gallery, replace=False)) if n_gallery else multi
        extra = sorted(rng.choice(singles, n_single, replace=False)) if n_single else []
        in_gallery = np.zeros(len(f.names), bool)
        in_gallery[gallery_ids] = True
        in_gallery[extra] = True
        g_vecs, g_ids, mated = [], [], []
        for ident in gallery_ids:
            photos = [p for p in by_id[ident] if f.found[p]]
            if not photos:
                fte += 1
                mated += by_id[ident]
                continue
            if enrol == "best":
                good = [p for p in photos if gate_ok[p]] or photos
                pick = max(good, key=lambda p: enrol_score(f, p))
            else:
                pick = photos[0]
            g_vecs.append(vecs[pick])
            g_ids.append(ident)
            mated += [p for p in by_id[ident] if p != pick]
        for ident in extra:
            g_vecs.append(vecs[by_id[ident][0]])
            g_ids.append(ident)
        gallery = np.stack(g_vecs)
        sizes.append(len(g_vecs))
        g_ids_arr = np.array(g_ids)
        non = np.flatnonzero(~in_gallery[f.identity])
        mated_arr = np.array(mated)
        if probe_ok is not None:  # gated probes would be recaptured: out of both sides
            mated_arr = mated_arr[probe_ok[mated_arr]]
            non = non[probe_ok[non]]
        for probes, is_mated in ((mated_arr, True), (non, False)):
            scores = vecs[probes] @ gallery.T
            order = np.argsort(-scores, axis=1)[:, :TOP_K]
            top = np.take_along_axis(scores, order, axis=1)
            top1 = np.where(f.found[probes], top[:, 0], -np.inf)
            if is_mated:
                mt.append(top1)
                mc.append(g_ids_arr[order[:, 0]] == f.identity[probes])
                mtop.append(top)
                mp.append(probes)
            else:
                nt.append(top1)
                ntop.append(top)
                npr.append(probes)
        spans.append((slice(m_pos, m_pos + len(mated_arr)), slice(n_pos, n_pos + len(non))))
        m_pos += len(mated_arr)
        n_pos += len(non)
    mated_top = np.concatenate(mtop)
    return Searches(np.concatenate(mt), np.concatenate(mc), mated_top[:, 0] - mated_top[:, 1], np.concatenate(nt),
                    spans, fte, mated_top, np.concatenate(ntop), np.concatenate(mp), np.concatenate(npr), sizes)


def enrol_score(f: Features, p: int) -> float:
    """Enrolment-side quality: the first photo passing every gate, as an enrolment kiosk retakes
    until one does. (Picking the "best" by embedding norm or detector score was worse on LFW.)"""
    return -float(p)


def threshold_at_fpir(non_top1: np.ndarray, fpir: float) -> float:
    """Lowest threshold whose FPIR (share of non-mated searches with top1 >= t) is <= ``fpir``."""
    ordered = np.sort(non_top1)[::-1]
    k = int(np.floor(fpir * len(ordered)))
    return float(np.nextafter(np.float32(ordered[k]), np.float32(np.inf))) if k < len(ordered) else -1.0


def at_threshold(s: Searches, t: float, margin: float = 0.0) -> dict[str, float]:
    accept = (s.mated_top1 >= t) & (s.mated_margin >= margin)
    hits = accept & s.mated_correct
    wrong = accept & ~s.mated_correct
    n_m, n_n = len(s.mated_top1), len(s.non_top1)
    return {"threshold": round(t, 4), "fnir": round(1 - hits.sum() / n_m, 5),
            "fpir": round(float((s.non_top1 >= t).sum() / n_n), 5), "wrong_accepts": int(wrong.sum()),
            "mated": n_m, "non_mated": n_n}


def at_fpir(s: Searches, fpir: float = NIST_FPIR) -> dict[str, float]:
    """FNIR at ``fpir``, thresholds set per gallery draw, pooled; plus the spread over draws."""
    per_seed = []
    misses = wrong = n = 0
    thresholds = []
    for ms, ns in s.seeds:
        t = threshold_at_fpir(s.non_top1[ns], fpir)
        thresholds.append(t)
        hits = (s.mated_top1[ms] >= t) & s.mated_correct[ms]
        misses += int((~hits).sum())
        wrong += int(((s.mated_top1[ms] >= t) & ~s.mated_correct[ms]).sum())
        n += hits.size
        per_seed.append(1 - hits.mean())
    return {"fnir": round(misses / n, 5), "fnir_min": round(min(per_seed), 5), "fnir_max": round(max(per_seed), 5),
            "threshold": round(float(np.mean(thresholds)), 4), "wrong_accepts": wrong, "mated": n,
            "draws": len(s.seeds)}


def table(s: Searches, thresholds: list[float], margin: float) -> list[dict[str, Any]]:
    rows = []
    for t in thresholds:
        row: dict[str, Any] = at_threshold(s, t)  # plus a None where no search is a hit
        with_margin = at_threshold(s, t, margin)
        row[f"fnir_margin_{margin}"] = with_margin["fnir"]
        row[f"wrong_accepts_margin_{margin}"] = with_margin["wrong_accepts"]
        ok = (s.mated_top1 >= t) & s.mated_correct
        row["margin_p05_of_hits"] = round(float(np.percentile(s.mated_margin[ok], 5)), 4) if ok.any() else None
        rows.append(row)
    return rows


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    err(f"\n{title}")
    keys = list(rows[0])
    err("  ".join(f"{k:>12}" for k in keys))
    for r in rows:
        err("  ".join(f"{r[k]!s:>12}" for k in keys))

