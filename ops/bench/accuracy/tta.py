"""Opt-in test-time augmentation (``--tta``): multi-crop templates, embedded once and cached."""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from flighttoken.faces.arcface import ARCFACE_DST, similarity_transform
from flighttoken.faces.decode import decode_image
from flighttoken.faces.detect import Scene, find_faces
from flighttoken.faces.engine import FaceEngine
from flighttoken.faces.errors import ImageError
from flighttoken.faces.models import Detections
from flighttoken.settings import Settings
from ops.bench.accuracy.features import err

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flighttoken-bench"


def _subject(engine: FaceEngine, settings: Settings, path: Path) -> tuple[np.ndarray, Detections, Scene] | None:
    """Decoded image, detections and scene of one photo, or None when it is unreadable or faceless."""
    try:
        img, info = decode_image(path.read_bytes(), engine.limits)
    except ImageError:
        return None
    dets, scene = find_faces(engine.detector, img, info.scale, settings.quality.tailgating_size_ratio)
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
    engine = FaceEngine.load(settings.replace(engine_threads=1))
    key_parts = [engine.detector.model_id, engine.model_id, settings.models.detector_input_size,
                 settings.quality.detector_score_threshold, len(files), TTA_VIEWS, 3]
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

