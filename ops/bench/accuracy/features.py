"""One pass of the service's face engine over lfw-train, cached: what every accuracy figure is computed from.

Each photo goes through ``FaceEngine``'s own stages (decode, detection, scene, alignment, quality
measure, then ``_assemble``: the quality verdicts and tailgating flag the service acts on). The
recogniser is run once on the crop and its mirror image, which yields both the plain embedding and
the flip-averaged one (the service's template when ``flip_average``); a spot check compares the
latter with ``FaceEngine.analyse_sync`` so the cache cannot drift from the service.
Cached in the system temp folder, keyed by model ids and detector settings.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from flighttoken.faces import quality
from flighttoken.faces.engine import FaceEngine
from flighttoken.faces.errors import ImageError
from flighttoken.faces.quality import QualityMetrics, QualityThresholds
from flighttoken.settings import Settings
from flighttoken.vocabulary import DecisionReason

METRICS = list(QualityMetrics.__struct_fields__)
VARIANTS = ("plain", "flip")  # embeddings computed in one pass: without / with the mirror image averaged in
CACHE_VERSION = 7


def err(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


@dataclass
class Features:
    paths: list[str]  # relative to lfw-train
    identity: np.ndarray  # (n,) int index into names
    names: list[str]
    found: np.ndarray  # (n,) bool: a face was detected
    vecs: dict[str, np.ndarray]  # variant -> (n, d) unit vectors, zero where not found
    norm: np.ndarray  # (n,) raw embedding norm (service alignment)
    metrics: np.ndarray  # (n, len(METRICS)) of the service configuration, nan where not found
    others: np.ndarray  # (n,) other faces in the photo
    tailgating: np.ndarray  # (n,) bool: the engine's tailgating flag (refused at e-channels)
    failures: list[list[str]]  # (n,) the engine's quality failure codes, ["no_face"] where none found

    @property
    def plain(self) -> np.ndarray:
        return self.vecs["plain"]

    @property
    def flip(self) -> np.ndarray:
        return self.vecs["flip"]

    def capture_ok(self, e_channel: bool = False) -> np.ndarray:
        """Photos the service would search with: a face, no quality failure (and no tailgater at an e-channel)."""
        ok = np.array([not f for f in self.failures]) & self.found
        return ok & ~self.tailgating if e_channel else ok


def service_variant(s: Settings) -> str:
    return "flip" if s.engine.flip_average else "plain"


def passes(features: Features, t: QualityThresholds) -> np.ndarray:
    """Photos passing quality gates ``t`` (re-evaluated from the cached metrics, for other thresholds)."""
    ok = features.found.copy()
    for i in np.flatnonzero(ok):
        m = QualityMetrics(**{k: float(v) for k, v in zip(METRICS, features.metrics[i], strict=True)})
        ok[i] = not quality.failures(m, t)
    return ok


def extract(settings: Settings, root: Path, use_cache: bool) -> Features:
    files = sorted(root.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no photos under {root}: set FLIGHTTOKEN_FACES_DIR")
    # One session thread and two workers: on 2 cores that beats one 2-thread session by ~25%.
    engine = FaceEngine.load(settings.replace(engine_threads=1, batch_max_size=1))
    key_parts = [engine.detector.model_id, engine.model_id, settings.models.detector_input_size,
                 settings.quality.detector_score_threshold, settings.quality.tailgating_size_ratio,
                 msgspec.to_builtins(engine.thresholds), len(files), CACHE_VERSION]
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "flighttoken-bench" / f"lfw-{key}.npz"
    names = sorted({f.parent.name for f in files})
    index = {n: i for i, n in enumerate(names)}
    paths = [f"{f.parent.name}/{f.name}" for f in files]
    identity = np.array([index[f.parent.name] for f in files], dtype=np.int32)
    if use_cache and cache.exists():
        z = np.load(cache)
        err(f"embeddings from cache {cache}")
        fails = [s.split(",") if s else [] for s in z["failures"].tolist()]
        return Features(paths, identity, names, z["found"], {v: z[v] for v in VARIANTS}, z["norm"],
                        z["metrics"], z["others"], z["tailgating"], fails)

    rec = engine.recognizer
    n, d = len(files), rec.dim
    found = np.zeros(n, bool)
    vecs = {v: np.zeros((n, d), np.float32) for v in VARIANTS}
    norm = np.zeros(n, np.float32)
    metrics = np.full((n, len(METRICS)), np.nan, np.float32)
    others = np.zeros(n, np.int32)
    tailgating = np.zeros(n, bool)
    fails: list[list[str]] = [[DecisionReason.NO_FACE] for _ in range(n)]

    def one(i: int) -> None:
        try:
            front = engine._front(files[i].read_bytes())  # the service's first stage, as analyse_sync runs it
        except ImageError:
            return
        if front.crop is None:
            return
        raw = rec.run(rec.prepare([front.crop], flip=True))[0]  # rows: the crop, then its mirror image
        for name, rows in (("plain", [0]), ("flip", [0, 1])):
            vecs[name][i] = rec.finish(raw[rows], 1, flip=len(rows) == 2)[0][0]
        service_vec = vecs[service_variant(settings)][i]
        analysis = engine._assemble(front, (service_vec, float(np.linalg.norm(raw[0]))))
        norm[i] = float(np.linalg.norm(raw[0]))
        metrics[i] = [getattr(analysis.quality, k) for k in METRICS]
        others[i] = analysis.other_faces
        tailgating[i] = analysis.tailgating
        fails[i] = list(analysis.quality_failures)
        found[i] = True

    def save(path: Path, done: int) -> None:
        np.savez(path, found=found, norm=norm, metrics=metrics, others=others, tailgating=tailgating,
                 failures=np.array([",".join(f) for f in fails]), done=done,
                 **vecs)  # pyright: ignore[reportArgumentType]  # variant names never clash with savez's keywords

    # Checkpointed every chunk: a run killed half-way (a loaded machine) resumes where it stopped.
    partial = cache.with_suffix(".partial.npz")
    start = 0
    if use_cache and partial.exists():
        z = np.load(partial)
        start = int(z["done"])
        found[:], norm[:], metrics[:], others[:], tailgating[:] = (z["found"], z["norm"], z["metrics"],
                                                                   z["others"], z["tailgating"])
        fails[:] = [s.split(",") if s else [] for s in z["failures"].tolist()]
        for v in VARIANTS:
            vecs[v][:] = z[v]
        err(f"resuming at photo {start} from {partial}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for chunk in range(start, n, 250):
            list(pool.map(one, range(chunk, min(chunk + 250, n))))
            save(partial, min(chunk + 250, n))
            err(f"  embedded {min(chunk + 250, n)}/{n} in {time.perf_counter() - t0:.0f} s")
    _spot_check(engine, files, vecs[service_variant(settings)], fails)
    save(cache, n)
    partial.unlink(missing_ok=True)
    err(f"embedded {n} photos in {time.perf_counter() - t0:.0f} s; cached in {cache}")
    return Features(paths, identity, names, found, vecs, norm, metrics, others, tailgating, fails)


def _spot_check(engine: FaceEngine, files: list[Path], vecs: np.ndarray, fails: list[list[str]]) -> None:
    """The cached templates and verdicts are the service's own: compare a few with ``analyse_sync``."""
    for i in range(0, len(files), max(1, len(files) // 5)):
        a = engine.analyse_sync(files[i].read_bytes())
        if a.template is not None:
            assert float(np.dot(a.template.vector, vecs[i])) > 0.9999, files[i]
            assert list(a.quality_failures) == fails[i], files[i]
