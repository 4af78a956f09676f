"""Open-set 1:N accuracy on LFW, in the style of NIST FRVT Part 7 (NISTIR 8381, paperless travel).

    .venv/bin/python -m ops.bench.accuracy [--seeds 10] [--no-cache]

Gallery: one photo of each of N identities (N = 420, NIST's one-flight gallery, drawn at random from
the identities with >= 2 photos, repeated over ``--seeds`` draws and pooled; and N = all of them).
Mated probes: the other photos of enrolled identities. Non-mated probes: every photo of an identity
outside the gallery. A mated search is a hit when its rank-1 candidate is the mate and scores at or
above the threshold; a photo without a detectable face is a miss (mated) or a non-alarm (non-mated).

Reported: FNIR at FPIR = 0.003 and at the service's thresholds, wrong-identity accepts, a threshold
table (the service's ``match_threshold`` default comes from it), the effect of flip-averaging, of
enrolment-side quality (enrol each identity's best photo) and of probe quality gating, a watchlist
operating point, and LFW's distribution of every quality metric (the quality gate defaults).

Issue 3 (decisions): probe-side score normalisation with the gallery as cohort, a quality
correction, the runner-up margin, and probe quality gating counted honestly (a refused mated probe
is a miss, as FRVT counts a failure to template; the "retaken" count is shown beside it). Each
decision variant also shows its FPIR on the poorest third of captures (lowest embedding norms): a
variant raising it by more than a quarter does not count towards the target. The target is met
only by the service's templates on FRVT's measure (raw top score, threshold set for FPIR 0.003);
the service's own thresholds and runner-up margin are reported beside it ("service",
"threshold_by_gallery_size").
Issue 8 (gallery size): the impostor tail p(t) over every different-identity pair; the fit behind
``impostor_tail_*``; measured FPIR at N = 420 / 1,200 / 3,654 (single-photo identities as extra
gallery entries) against 1 - (1 - p(t))^N; the service's thresholds (``rules.threshold_for``) at
N = 420 / 3,000 / 42,000.
Embeddings are cached in the system temp folder, keyed by model ids and detector settings.
Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import msgspec
import numpy as np
import structlog

from flighttoken.devices.model import DeviceKind
from flighttoken.faces import quality
from flighttoken.faces.arcface import ARCFACE_DST, similarity_transform
from flighttoken.faces.decode import decode_image
from flighttoken.faces.detect import Scene, find_faces
from flighttoken.faces.engine import FaceEngine
from flighttoken.faces.errors import ImageError
from flighttoken.faces.models import Detections
from flighttoken.faces.quality import QualityMetrics, QualityThresholds
from flighttoken.journey.rules import impostor_rate, predicted_fpir, size_threshold, threshold_for
from flighttoken.settings import Settings, load_settings

NIST_FPIR = 0.003
WATCHLIST_FPIR = 0.01
GALLERY_N = 420
METRICS = [f for f in QualityMetrics.__struct_fields__]
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flighttoken-bench"


def err(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


@dataclass
class Features:
    paths: list[str]  # relative to lfw-train
    identity: np.ndarray  # (n,) int index into names
    names: list[str]
    found: np.ndarray  # (n,) bool: a face was detected
    vecs: dict[str, np.ndarray]  # variant → (n, d) unit vectors, zero where not found
    norm: np.ndarray  # (n,) raw embedding norm (service alignment)
    metrics: np.ndarray  # (n, len(METRICS)) of the service configuration, nan where not found
    others: np.ndarray  # (n,) other faces in the photo

    # The service's alignment, with and without the mirror image (ops/bench/watchlist.py uses these).
    @property
    def plain(self) -> np.ndarray:
        return self.vecs["plain"]

    @property
    def flip(self) -> np.ndarray:
        return self.vecs["flip"]


# Embedding variants computed in one pass: with or without the mirror image averaged in.
VARIANTS = ("plain", "flip")


def service_variant(s: Settings) -> str:
    return "flip" if s.flip_average else "plain"


def extract(settings: Settings, root: Path, use_cache: bool) -> Features:
    files = sorted(root.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no photos under {root}: set FLIGHTTOKEN_FACES_DIR")
    # One session thread and two workers: on 2 cores that beats one 2-thread session by ~25%.
    engine = FaceEngine.load(msgspec.structs.replace(settings, engine_threads=1))
    key_parts = [engine.detector.model_id, engine.model_id, settings.detector_input_size,
                 settings.detector_score_threshold, len(files), 6]
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "flighttoken-bench" / f"lfw-{key}.npz"
    names = sorted({f.parent.name for f in files})
    index = {n: i for i, n in enumerate(names)}
    paths = [f"{f.parent.name}/{f.name}" for f in files]
    identity = np.array([index[f.parent.name] for f in files], dtype=np.int32)
    if use_cache and cache.exists():
        z = np.load(cache)
        err(f"embeddings from cache {cache}")
        return Features(paths, identity, names, z["found"], {v: z[v] for v in VARIANTS}, z["norm"],
                        z["metrics"], z["others"])

    rec = engine.recognizer
    n, d = len(files), rec.dim
    found = np.zeros(n, bool)
    vecs = {v: np.zeros((n, d), np.float32) for v in VARIANTS}
    norm = np.zeros(n, np.float32)
    metrics = np.full((n, len(METRICS)), np.nan, np.float32)
    others = np.zeros(n, np.int32)

    def one(i: int) -> None:
        seen = _subject(engine, settings, files[i])
        if seen is None:
            return
        img, dets, scene = seen
        landmarks = dets.landmarks[scene.subject]
        crop = rec.align(img, landmarks)
        raw = rec.run(rec.prepare([crop], flip=True))[0]  # rows: the crop, then its mirror image
        for name, rows in (("plain", [0]), ("flip", [0, 1])):
            vecs[name][i] = rec.finish(raw[rows], 1, flip=len(rows) == 2)[0][0]
        norm[i] = float(np.linalg.norm(raw[0]))
        face = scene.faces[scene.subject]
        m = quality.measure(crop, landmarks, face.det_score, face.inter_eye_px)
        metrics[i] = [getattr(m, name) for name in METRICS]
        others[i] = scene.other_faces
        found[i] = True

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for k, _ in enumerate(pool.map(one, range(n))):
            if k % 1000 == 999:
                err(f"  embedded {k + 1}/{n} in {time.perf_counter() - t0:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, found=found, norm=norm, metrics=metrics, others=others, **vecs)
    err(f"embedded {n} photos in {time.perf_counter() - t0:.0f} s; cached in {cache}")
    return Features(paths, identity, names, found, vecs, norm, metrics, others)


def _subject(engine: FaceEngine, settings: Settings, path: Path) -> tuple[np.ndarray, Detections, Scene] | None:
    """Decoded image, detections and scene of one photo, or None when it is unreadable or faceless."""
    try:
        img, info = decode_image(path.read_bytes(), engine.limits)
    except ImageError:
        return None
    dets, scene = find_faces(engine.detector, img, info.scale, settings.tailgating_size_ratio)
    return None if scene.subject is None else (img, dets, scene)


# Test-time augmentation (multi-crop templates): the aligned crop re-made with the landmark
# template zoomed out/in by 6 % and shifted 2 px up/down, each with its mirror image; a template is
# the mean of the unit vectors of a set of views. Opt-in (--tta): ~25 min to embed 10 views of 7,371
# photos on 2 cores, cached like the main embeddings.
TTA_VIEWS = (("base", 1.0, 0.0), ("zoom_out", 0.94, 0.0), ("zoom_in", 1.06, 0.0), ("up", 1.0, -2.0),
             ("down", 1.0, 2.0))
TTA_SETS = {"tta_scale3_flip": ("base", "zoom_out", "zoom_in"), "tta_shift3_flip": ("base", "up", "down"),
            "tta_all5_flip": tuple(v[0] for v in TTA_VIEWS)}


def tta_templates(settings: Settings, root: Path, use_cache: bool, allow_extract: bool) -> dict[str, np.ndarray] | None:
    files = sorted(root.glob("*/*.jpg"))
    engine = FaceEngine.load(msgspec.structs.replace(settings, engine_threads=1))
    key_parts = [engine.detector.model_id, engine.model_id, settings.detector_input_size,
                 settings.detector_score_threshold, len(files), TTA_VIEWS, 3]
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"lfw-tta-{key}.npz"
    if use_cache and cache.exists():
        views = np.load(cache)["V"]
    elif not allow_extract:
        return None
    else:
        rec = engine.recognizer
        views = np.zeros((len(files), 2 * len(TTA_VIEWS), rec.dim), np.float32)
        base = ARCFACE_DST * (rec.crop_size / 112.0)  # the recogniser's own alignment target
        centre = base.mean(axis=0)
        dsts = [centre + (base - centre) * zoom + np.array([0.0, dy]) for _, zoom, dy in TTA_VIEWS]

        def one(i: int) -> None:
            seen = _subject(engine, settings, files[i])
            if seen is None:
                return
            img, dets, scene = seen
            lm = dets.landmarks[scene.subject]
            crops = [cv2.warpAffine(img, similarity_transform(lm, d), (rec.crop_size, rec.crop_size),
                                    borderValue=0.0) for d in dsts]
            raw = rec.run(rec.prepare(crops, flip=True))[0]  # originals, then their mirrors
            views[i] = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(one, range(len(files))))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, V=views)
        err(f"TTA: embedded {len(files)} photos x {views.shape[1]} views in {time.perf_counter() - t0:.0f} s")
    names = [v[0] for v in TTA_VIEWS]
    out = {}
    for label, members in TTA_SETS.items():
        cols = [names.index(m) for m in members] + [len(names) + names.index(m) for m in members]
        x = views[:, cols].sum(axis=1)
        out[label] = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


# --- protocol -------------------------------------------------------------------------------------


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


def passes(features: Features, t: QualityThresholds) -> np.ndarray:
    ok = features.found.copy()
    for i in np.flatnonzero(ok):
        m = QualityMetrics(**{k: float(v) for k, v in zip(METRICS, features.metrics[i], strict=True)})
        ok[i] = not quality.failures(m, t)
    return ok


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


def table(s: Searches, thresholds: list[float], margin: float) -> list[dict[str, float]]:
    rows = []
    for t in thresholds:
        row = at_threshold(s, t)
        with_margin = at_threshold(s, t, margin)
        row[f"fnir_margin_{margin}"] = with_margin["fnir"]
        row[f"wrong_accepts_margin_{margin}"] = with_margin["wrong_accepts"]
        ok = (s.mated_top1 >= t) & s.mated_correct
        row["margin_p05_of_hits"] = round(float(np.percentile(s.mated_margin[ok], 5)), 4) if ok.any() else None
        rows.append(row)
    return rows


def print_table(title: str, rows: list[dict[str, float]]) -> None:
    err(f"\n{title}")
    keys = list(rows[0])
    err("  ".join(f"{k:>12}" for k in keys))
    for r in rows:
        err("  ".join(f"{r[k]!s:>12}" for k in keys))


def quality_report(f: Features, s: Settings) -> dict[str, object]:
    """Each metric's LFW percentiles, and how often its gate fires: the basis of the defaults."""
    t = QualityThresholds.from_settings(s)
    m = f.metrics[f.found]
    out: dict[str, object] = {"photos_with_face": int(f.found.sum()), "photos": len(f.found)}
    for k, name in enumerate(METRICS):
        col = m[:, k]
        if name in ("yaw_deg", "roll_deg"):
            col = np.abs(col)
        out[name] = {f"p{q}": round(float(np.percentile(col, q)), 3) for q in (0.5, 1, 5, 50, 95, 99, 99.5)}
    fired: dict[str, int] = {}
    for i in np.flatnonzero(f.found):
        mi = QualityMetrics(**{k: float(v) for k, v in zip(METRICS, f.metrics[i], strict=True)})
        for code in quality.failures(mi, t):
            fired[code] = fired.get(code, 0) + 1
    out["gate_fires"] = fired
    out["thresholds"] = {k: getattr(t, k) for k in t.__struct_fields__}
    return out


def gate_effect(f: Features, vecs: np.ndarray, seeds: int, s: Settings) -> dict[str, object]:
    """FNIR at one fixed threshold for mated probes that pass vs fail each gate."""
    base = run_protocol(f, vecs, GALLERY_N, seeds, "first", None, f.found)
    thr = at_fpir(base)["threshold"]
    # Recover which probe is which: rerun with per-probe metrics (same order as run_protocol).
    rows = {}
    t = QualityThresholds.from_settings(s)
    for code in (quality.LOW_DETECTION_SCORE, quality.FACE_TOO_SMALL, quality.TOO_BLURRY, quality.TOO_DARK,
                 quality.TOO_BRIGHT, quality.HEAD_TURNED, quality.HEAD_TILTED):
        fires = np.zeros(len(f.found), bool)
        for i in np.flatnonzero(f.found):
            mi = QualityMetrics(**{k: float(v) for k, v in zip(METRICS, f.metrics[i], strict=True)})
            fires[i] = code in quality.failures(mi, t)
        fail = run_protocol(f, vecs, GALLERY_N, seeds, "first", fires | ~f.found, f.found)
        ok = run_protocol(f, vecs, GALLERY_N, seeds, "first", ~fires & f.found, f.found)
        rows[code] = {"mated_failing": len(fail.mated_top1) - int((fail.mated_top1 == -np.inf).sum()),
                      "fnir_failing": at_threshold(fail, thr)["fnir"] if (fail.mated_top1 > -np.inf).any() else None,
                      "fnir_passing": at_threshold(ok, thr)["fnir"]}
    return {"threshold": thr, "by_gate": rows}


# --- decisions: cohort score normalisation, honest quality gating (issue 3) ----------------------


def decision_variants(searches: dict[str, Searches], f: Features) -> dict[str, dict[str, object]]:
    """Score normalisation with the gallery itself as cohort (T-norm / AS-norm style, probe side): the
    candidate's score corrected by the probe's other top-``TOP_K`` scores; and a probe-quality
    correction by embedding norm. Each variant's threshold is re-set for FPIR 0.003, so FNIR compares."""
    centre = float(np.median(f.norm[f.found]))
    spread = float(np.std(f.norm[f.found]))
    k = TOP_K

    def cohort(top: np.ndarray) -> np.ndarray:
        return top[:, 1:k]

    fns = {
        "raw_s1_service": lambda top, pr: top[:, 0],
        "s1_minus_0.25_s2": lambda top, pr: top[:, 0] - 0.25 * top[:, 1],
        "s1_minus_0.5_s2": lambda top, pr: top[:, 0] - 0.5 * top[:, 1],
        f"s1_minus_0.5_mean_s2_s{k}": lambda top, pr: top[:, 0] - 0.5 * cohort(top).mean(1),
        f"s1_minus_mean_s2_s{k}": lambda top, pr: top[:, 0] - cohort(top).mean(1),
        f"znorm_s2_s{k}": lambda top, pr: (top[:, 0] - cohort(top).mean(1)) / (cohort(top).std(1) + 1e-6),
        "s1_minus_0.01_norm_z": lambda top, pr: top[:, 0] - 0.01 * (f.norm[pr] - centre) / spread,
    }
    for m in (0.02, 0.05, 0.08):  # the service's runner-up margin, with the threshold re-set for FPIR 0.003
        fns[f"margin_{m}"] = lambda top, pr, m=m: np.where(top[:, 0] - top[:, 1] >= m, top[:, 0], -np.inf)
    out: dict[str, dict[str, object]] = {}
    poorest = f.found & (f.norm < np.quantile(f.norm[f.found], 1 / 3))
    for name, fn in fns.items():
        out[name] = {scale: at_fpir(sr.rescored(fn)) for scale, sr in searches.items()}
        # A correction may buy FNIR with false accepts on poor captures: FPIR over the non-mated
        # probes in the lowest third of embedding norms, at the variant's own thresholds.
        out[name]["fpir_low_norm_third"] = fpir_where(searches["n420"].rescored(fn), poorest)
        err(f"decision {name:28} " + "  ".join(f"{scale} FNIR {out[name][scale]['fnir']:.4f}" for scale in searches)
            + f"  FPIR of the poorest third {out[name]['fpir_low_norm_third']:.4f}")
    return out


def fpir_where(s: Searches, probe_mask: np.ndarray, fpir: float = NIST_FPIR) -> float:
    """FPIR among the non-mated searches whose probe is in ``probe_mask``, thresholds set per draw."""
    alarms = n = 0
    for _, ns in s.seeds:
        t = threshold_at_fpir(s.non_top1[ns], fpir)
        sel = probe_mask[s.non_probes[ns]]
        alarms += int((s.non_top1[ns][sel] >= t).sum())
        n += int(sel.sum())
    return round(alarms / max(n, 1), 5)


def gating_counted(f: Features, vecs: np.ndarray, seeds: int, gate: np.ndarray) -> dict[str, object]:
    """Probe quality gating, counted two ways at N = 420 (enrolment on the first photo passing the
    gates, as the kiosk retakes until one does):

    * ``refused_as_miss`` (FRVT's rule for a failure to template): a mated probe the gates refuse is a
      miss, a non-mated one raises no alarm. This is what a single capture at a touchpoint gets.
    * ``refused_then_retaken``: refused probes are out of both sides, as if the traveller, told
      ``head_turned`` or ``too_dark``, looked up and a good capture followed. Optimistic by design.
    """
    base = run_protocol(f, vecs, GALLERY_N, seeds, "best", None, gate)
    return {"refused_share": round(float(1 - gate[f.found].mean()), 4),
            "no_gating": at_fpir(base), "refused_as_miss": at_fpir(base.refused(gate)),
            "refused_then_retaken": at_fpir(run_protocol(f, vecs, GALLERY_N, seeds, "best", gate, gate))}


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
        f"{s.impostor_tail_score_1e6} / {s.impostor_tail_decade}")
    suspects = [{"score": round(sc, 3), "names": sorted(f.names[i] for i in pair)}
                for pair, sc in sorted(tail.suspects.items(), key=lambda kv: -kv[1])]
    err(f"name pairs scoring >= {SUSPECT_SCORE} (label errors, duplicates, two-person photos, twins): "
        + ", ".join(f"{'/'.join(x['names'])} {x['score']}" for x in suspects))
    return {"pairs": tail.pairs, "fit_p_range": list(TAIL_FIT), "fit_score_1e6": round(tail.score_1e6, 4),
            "fit_decade": round(tail.decade, 4), "settings_score_1e6": s.impostor_tail_score_1e6,
            "settings_decade": s.impostor_tail_decade, "rows": rows, "suspect_score": SUSPECT_SCORE,
            "suspect_name_pairs": suspects}


# Gallery sizes with measured FPIR: (multi-photo identities enrolled, single-photo distractors added).
MEASURED_SIZES = {"n420": (420, 0), "n1200": (592, 608), "n3654": (800, 2854)}


def fpir_by_size(f: Features, vecs: np.ndarray, seeds: int, gate: np.ndarray, tail: Tail,
                 s: Settings) -> tuple[dict[str, object], dict[str, tuple[Searches, Searches, np.ndarray]]]:
    """Measured FPIR at the model's t(N) against the prediction 1 - (1 - p(t))^N (model and measured p).

    ``*_clean`` figures leave out non-mated searches by the suspect identities (``SUSPECT_SCORE``):
    with every single-photo identity enrolled, a name filed twice turns a mated search into a
    "non-mated" one that scores 0.6-0.99 whatever the threshold.
    """
    out: dict[str, object] = {}
    runs: dict[str, tuple[Searches, Searches, np.ndarray]] = {}
    suspect = np.zeros(len(f.names), bool)
    suspect[tail.suspect_identities()] = True
    for name, (n_multi, n_single) in MEASURED_SIZES.items():
        sr = run_protocol(f, vecs, n_multi, seeds, "best", None, gate, n_single)
        clean = sr.keep_non_mated(~suspect[f.identity[sr.non_probes]])
        runs[name] = (sr, clean, suspect[f.identity[sr.mated_probes]])
        n = round(float(np.mean(sr.gallery_sizes)))
        row: dict[str, object] = {"gallery": n, "non_mated_searches": len(sr.non_top1),
                                  "non_mated_searches_clean": len(clean.non_top1),
                                  "mated_searches": len(sr.mated_top1),
                                  "threshold_at_fpir_0.003_measured": at_fpir(sr)["threshold"],
                                  "threshold_at_fpir_0.003_measured_clean": at_fpir(clean)["threshold"],
                                  "threshold_at_fpir_0.003_model": round(
                                      size_threshold(n, NIST_FPIR, s.impostor_tail_score_1e6,
                                                     s.impostor_tail_decade), 4)}
        for target in (NIST_FPIR, 0.001):
            t = size_threshold(n, target, s.impostor_tail_score_1e6, s.impostor_tail_decade)
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
    """The service's decision thresholds (``rules.threshold_for``) at N = 420 / 3,000 / 42,000, with
    FNIR measured under the full decision (threshold and margin) on the nearest LFW gallery at or
    below that size: rank-1 errors grow with N, so the 42,000 figure is a lower bound."""
    rows = []
    for n in THRESHOLD_SIZES:
        measured = "n420" if n <= 1000 else "n3654"
        sr, clean, mated_suspect = runs[measured]
        for kind in (DeviceKind.GATE, DeviceKind.E_CHANNEL, DeviceKind.LOUNGE):
            t = threshold_for(s, kind, n)
            accept_n = (sr.non_top1 >= t) & (sr.non_margin >= s.decision_margin)
            accept_clean = (clean.non_top1 >= t) & (clean.non_margin >= s.decision_margin)
            row = at_threshold(sr, t, s.decision_margin)
            wrong = (sr.mated_top1 >= t) & (sr.mated_margin >= s.decision_margin) & ~sr.mated_correct
            rows.append({"gallery": n, "touchpoint": kind.value, "threshold": round(t, 4),
                         "size_threshold": round(size_threshold(n, _target(s, kind), s.impostor_tail_score_1e6,
                                                                s.impostor_tail_decade), 4),
                         "target_fpir": _target(s, kind),
                         "fpir_predicted": round(predicted_fpir(t, n, s.impostor_tail_score_1e6,
                                                                s.impostor_tail_decade), 6),
                         "measured_on": measured, "fpir_measured_with_margin": round(float(accept_n.mean()), 5),
                         "fpir_clean_with_margin": round(float(accept_clean.mean()), 5),
                         "fnir_with_margin": row["fnir"], "wrong_accepts": row["wrong_accepts"],
                         "wrong_accepts_suspect_names": int((wrong & mated_suspect).sum())})
    print_table(f"decision thresholds by gallery size (margin {s.decision_margin}; FNIR/FPIR measured on the "
                "nearest LFW gallery)", rows)
    return rows


def _target(s: Settings, kind: DeviceKind) -> float:
    return {DeviceKind.GATE: s.gate_target_fpir, DeviceKind.E_CHANNEL: s.e_channel_target_fpir,
            DeviceKind.LOUNGE: s.lounge_target_fpir}[kind]


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
        out += [(float(block[r, j[r]]), idx[start + r], idx[j[r]]) for r in rows]
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


def main(argv: list[str] | None = None) -> int:
    # Logs to stderr: stdout carries only the result line.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10, help="random N=420 galleries to pool")
    ap.add_argument("--margin", type=float, default=0.05, help="top1-top2 margin rule shown in the table")
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
    gate = passes(f, QualityThresholds.from_settings(s))
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
    results: dict[str, object] = {"bench": "accuracy", "photos": len(f.paths), "identities": len(f.names),
                                  "faces_found": int(f.found.sum()), "gallery_draws": args.seeds,
                                  "service_variant": sv,
                                  "detector_input_size": s.detector_input_size,
                                  "probes_gated_out": round(float(1 - gate[f.found].mean()), 4),
                                  "tta": "measured" if tta is not None else "not run (--tta)"}
    searches: dict[tuple[str, str], Searches] = {}
    for scale, n_gallery in (("n420", GALLERY_N), ("n_all", None)):
        block = {}
        for name, (variant, enrol, probe_ok) in variants.items():
            sr = run_protocol(f, vec_sets[variant], n_gallery, args.seeds, enrol, probe_ok, gate)
            searches[(scale, name)] = sr
            row = at_fpir(sr)
            row["at_match_threshold"] = at_threshold(sr, s.match_threshold)
            row["enrol_failures"] = sr.enrol_failures
            block[name] = row
            err(f"{scale:6} {name:44} FNIR@FPIR{NIST_FPIR} = {row['fnir']:.4f} "
                f"[{row['fnir_min']:.4f}-{row['fnir_max']:.4f}] t={row['threshold']:.3f} "
                f"wrong={row['wrong_accepts']} | at {s.match_threshold}: FNIR {row['at_match_threshold']['fnir']:.4f} "
                f"FPIR {row['at_match_threshold']['fpir']:.4f}")
        results[scale] = block

    svc_name = {"plain": "baseline"}.get(sv, sv)
    svc = searches[("n420", svc_name)]
    grid = sorted({round(x, 3) for x in np.arange(0.25, 0.50, 0.01)} | {s.match_threshold})
    rows = table(svc, grid, args.margin)
    print_table(f"threshold table, N={GALLERY_N}, service variant {sv} ({args.seeds} draws pooled)", rows)
    results["threshold_table"] = rows
    # The service default: the lowest table threshold keeping pooled FPIR <= 0.003 at N = 420.
    recommended = next((r["threshold"] for r in rows if r["fpir"] <= NIST_FPIR), None)
    err(f"recommended match_threshold (lowest with FPIR <= {NIST_FPIR} at N={GALLERY_N}): {recommended}")
    results["service"] = {"variant": sv, "match_threshold": s.match_threshold,
                          "recommended_match_threshold": recommended,
                          "n420": at_threshold(svc, s.match_threshold),
                          "n_all": at_threshold(searches[("n_all", svc_name)], s.match_threshold)}

    # Watchlist (persons of interest; every alarm is reviewed by an officer): accept up to 1 % of
    # travellers raising an alarm to miss as few listed persons as possible.
    wl = at_fpir(svc, WATCHLIST_FPIR)
    wl_at = at_threshold(svc, wl["threshold"])
    results["watchlist"] = {"threshold": wl["threshold"], "hit_rate": round(1 - wl["fnir"], 5),
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
    results["target"] = {"fnir_at_fpir_0.003_n420_max": 0.012, "baseline": n420["baseline"]["fnir"],
                         "service": service, "met": service <= 0.012, "best": honest[best], "best_variant": best,
                         "best_with_retake_assumption": n420[optimistic]["fnir"],
                         "best_with_retake_assumption_variant": optimistic}
    err(f"\ntarget FNIR <= 0.012 at FPIR 0.003, N={GALLERY_N}: the service {service:.4f} "
        f"({'met' if service <= 0.012 else 'not met'}); best counted honestly {honest[best]:.4f} ({best}); "
        f"with the retake assumption {n420[optimistic]['fnir']:.4f} ({optimistic})")
    results["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(results, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
