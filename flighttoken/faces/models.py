"""ONNX sessions and the two model classes that own their pre- and post-processing.

Sessions own the runtime (threads, spinning, optimisation); :class:`Detector` and :class:`Recognizer`
own what goes in and out. Each has ``prepare`` → ``run`` → ``decode``/``finish`` steps so a benchmark
can time ``run`` alone (the raw onnxruntime cost) on exactly the tensors the engine feeds it, and
each keeps running totals of its raw ``session.run`` time.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import structlog

from flighttoken.faces.errors import ModelLoadError

log = structlog.get_logger(__name__)

MODEL_DIR_SETTING = "FLIGHTTOKEN_MODEL_DIR"

# ArcFace's canonical 5-point template for a 112x112 crop (eyes, nose tip, mouth corners).
ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def build_session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # Spinning workers burn the other session's core: two sessions go from ~20 ms to ~65 ms each.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # w600k_mbf declares a fixed batch of 1 on its output; every batched run would log a warning.
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def file_model_id(path: Path) -> str:
    """``<stem>:<sha256 prefix>``: two files with one name but different weights never share an id."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{path.stem}:{digest.hexdigest()[:12]}"


def load_zoo_model(path: Path, threads: int) -> tuple[object, ort.InferenceSession, str]:
    """Route ``path`` through insightface's model zoo, then swap in our tuned session.

    get_model() cannot take SessionOptions and prints to stdout; it never downloads for a path
    ending in ``.onnx``, and we check the file exists first so its assert never fires.
    """
    if not path.is_file():
        raise ModelLoadError(f"model file {path} not found; set {MODEL_DIR_SETTING} to the folder that holds "
                             f"{path.name}")
    from insightface import model_zoo  # deferred: pulls in onnx and friends

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
        if model is None:
            raise ValueError("not a detector or recognition model insightface knows")
        session = build_session(path, threads)
    except Exception as exc:  # onnxruntime raises its own hierarchy; anything here is fatal
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"model file {path} cannot be loaded ({reason}); check {MODEL_DIR_SETTING}") from None
    model.session = session  # type: ignore[attr-defined]
    return model, session, file_model_id(path)


@dataclass
class RunStats:
    """Raw ``session.run`` totals since the last reset (the benchmark's model-only time)."""

    calls: int = 0
    items: int = 0
    seconds: float = 0.0


class _Timed:
    session: ort.InferenceSession
    input_name: str

    def _init_stats(self) -> None:
        self._lock = threading.Lock()
        self.stats = RunStats()

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """Exactly one ``session.run``: the raw model cost, nothing else."""
        t0 = time.perf_counter()
        out = self.session.run(None, {self.input_name: blob})
        dt = time.perf_counter() - t0
        with self._lock:
            self.stats.calls += 1
            self.stats.items += blob.shape[0]
            self.stats.seconds += dt
        return out

    def reset_stats(self) -> RunStats:
        with self._lock:
            old, self.stats = self.stats, RunStats()
        return old


@dataclass(frozen=True, slots=True)
class Detections:
    boxes: np.ndarray  # (n, 4) x1, y1, x2, y2 in image pixels, best score first
    scores: np.ndarray  # (n,)
    landmarks: np.ndarray  # (n, 5, 2): right eye, left eye (image left to right), nose, mouth corners

    def __len__(self) -> int:
        return int(self.scores.shape[0])


# Smallest input the half-size second look runs at (detector_input_size below twice this: no second look).
CLOSE_LOOK_MIN_INPUT = 160


class Detector(_Timed):
    """SCRFD with 5 landmarks on a square letterboxed input (so frames of any size can share a batch)."""

    nms_threshold = 0.4

    def __init__(self, path: Path, threads: int, input_size: int, score_threshold: float) -> None:
        model, self.session, self.model_id = load_zoo_model(path, threads)
        if not getattr(model, "taskname", "") == "detection" or not getattr(model, "use_kps", False):
            raise ModelLoadError(f"model file {path} is not a 5-landmark SCRFD detector; check "
                                 f"{MODEL_DIR_SETTING} and FLIGHTTOKEN_DETECTOR_FILE")
        self.input_name = self.session.get_inputs()[0].name
        self.strides: list[int] = list(model._feat_stride_fpn)  # type: ignore[attr-defined]
        self.num_anchors: int = model._num_anchors  # type: ignore[attr-defined]
        self.mean: float = model.input_mean  # type: ignore[attr-defined]
        self.std: float = model.input_std  # type: ignore[attr-defined]
        self.input_size = input_size
        self.score_threshold = score_threshold
        self._centers: dict[tuple[int, int], np.ndarray] = {}
        # uint8 → normalised float32 by table: 10x faster than cv2.dnn.blobFromImage at 640x640 (0.5 ms
        # against 5 ms), which matters when the model itself runs in ~15 ms.
        self._lut = ((np.arange(256, dtype=np.float32) - self.mean) / self.std).reshape(256, 1)
        self._init_stats()

    def prepare(self, img: np.ndarray, size: int | None = None) -> tuple[np.ndarray, float]:
        """Letterbox into the top-left of a square input; returns the (1,3,S,S) blob and the scale."""
        size = size or self.input_size
        h, w = img.shape[:2]
        scale = size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else img
        canvas = np.zeros((size, size, 3), dtype=np.uint8)
        canvas[:nh, :nw] = resized
        return self._blob(canvas), scale

    def _blob(self, canvas: np.ndarray) -> np.ndarray:
        h, w = canvas.shape[:2]
        blob = np.empty((1, 3, h, w), dtype=np.float32)
        planes = cv2.split(canvas)
        for k in range(3):  # BGR planes → RGB channels
            cv2.LUT(planes[2 - k], self._lut, dst=blob[0, k])
        return blob

    def prepare_refine(self, img: np.ndarray, landmarks: np.ndarray, size: int,
                       target_ied: float) -> tuple[np.ndarray, np.ndarray]:
        """A ``size``-square patch centred on a face, scaled so its inter-eye distance is ``target_ied``.

        Returns the blob and the 2x3 matrix mapping image → patch coordinates.
        """
        ied = float(np.linalg.norm(landmarks[1] - landmarks[0]))
        s = target_ied / max(ied, 1e-3)
        cx, cy = landmarks.mean(axis=0)
        m = np.array([[s, 0.0, size / 2 - s * cx], [0.0, s, size / 2 - s * cy]])
        if s < 0.5:  # big downscale: area-average first so the patch is not aliased
            h, w = img.shape[:2]
            half = size / (2 * s)
            x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
            x1, y1 = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
            f = s * 2
            small = cv2.resize(img[y0:y1, x0:x1], None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            # patch = (small coords) * 0.5 + offset: compose with the crop and pre-scale.
            m2 = np.array([[0.5, 0.0, size / 2 - s * (cx - x0)], [0.0, 0.5, size / 2 - s * (cy - y0)]])
            patch = cv2.warpAffine(small, m2, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
        else:
            patch = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
        return self._blob(patch), m

    def refine(self, img: np.ndarray, landmarks: np.ndarray, size: int, target_ied: float) -> np.ndarray | None:
        """Landmarks re-detected with the face at a canonical scale, in image coordinates.

        Off by default (``landmark_refine_ied_px``): on LFW it cost FNIR (1.27 % against 1.18 % at FPIR
        0.003, N = 420, with flip-averaging) once the half-size second look (:meth:`add_close_faces`)
        caught the faces too big for the full-size pass. None when the re-detection finds no face there.
        """
        blob, m = self.prepare_refine(img, landmarks, size, target_ied)
        dets = self.decode(self.run(blob), 1.0, size=size)
        if len(dets) == 0:
            return None
        centres = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
        k = int(np.argmin(np.linalg.norm(centres - size / 2, axis=1)))
        if np.linalg.norm(centres[k] - size / 2) > size / 4:
            return None
        s = m[0, 0]
        return ((dets.landmarks[k] - m[:, 2]) / s).astype(np.float32)

    def decode(self, outputs: list[np.ndarray], scale: float, index: int = 0, size: int | None = None) -> Detections:
        """Anchor decoding + NMS for batch item ``index``; coordinates back in image pixels."""
        n = len(self.strides)
        size = size or self.input_size
        scores_l, boxes_l, kps_l = [], [], []
        for i, stride in enumerate(self.strides):
            scores = outputs[i][index, :, 0]
            keep = np.flatnonzero(scores >= self.score_threshold)
            if keep.size == 0:
                continue
            centers = self._anchor_centers(size, stride)[keep]
            dist = outputs[i + n][index, keep] * stride
            kdist = outputs[i + 2 * n][index, keep] * stride
            boxes_l.append(np.concatenate([centers - dist[:, :2], centers + dist[:, 2:]], axis=1))
            kps_l.append(kdist.reshape(-1, 5, 2) + centers[:, None, :])
            scores_l.append(scores[keep])
        if not scores_l:
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
        scores = np.concatenate(scores_l)
        boxes = np.concatenate(boxes_l) / scale
        kps = np.concatenate(kps_l) / scale
        keep_idx = _nms(boxes, scores, self.nms_threshold)
        return Detections(boxes[keep_idx].astype(np.float32), scores[keep_idx].astype(np.float32),
                          kps[keep_idx].astype(np.float32))

    def detect(self, img: np.ndarray) -> Detections:
        """The full-size pass."""
        blob, scale = self.prepare(img)
        return self.decode(self.run(blob), scale)

    def add_close_faces(self, img: np.ndarray, found: Detections) -> Detections:
        """``found`` plus what a half-size pass sees, overlaps merged by NMS.

        A face filling the frame (a traveller close to the kiosk camera) outgrows SCRFD's largest
        anchors at full size; at half size it is found. A quarter of a full run; :func:`find_faces`
        in faces/detect.py decides when a frame needs it.
        """
        if self.input_size < 2 * CLOSE_LOOK_MIN_INPUT:
            return found
        half = self.input_size // 2
        blob, scale = self.prepare(img, half)
        close = self.decode(self.run(blob), scale, size=half)
        if len(close) == 0:
            return found
        if len(found) == 0:
            return close
        boxes = np.concatenate([found.boxes, close.boxes])
        scores = np.concatenate([found.scores, close.scores])
        keep = _nms(boxes, scores, self.nms_threshold)
        return Detections(boxes[keep], scores[keep], np.concatenate([found.landmarks, close.landmarks])[keep])

    def _anchor_centers(self, size: int, stride: int) -> np.ndarray:
        key = (size, stride)
        centers = self._centers.get(key)
        if centers is None:
            side = size // stride
            grid = np.stack(np.mgrid[:side, :side][::-1], axis=-1).astype(np.float32).reshape(-1, 2) * stride
            centers = np.repeat(grid, self.num_anchors, axis=0)
            self._centers[key] = centers
        return centers


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    order = scores.argsort()[::-1]
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) mapping ``src`` points onto ``dst``.

    The same estimate as skimage's SimilarityTransform (Umeyama 1991) that insightface's norm_crop
    uses, in its closed 2-D form: with both point sets centred, the map is [[a, -b], [b, a]] where
    a = sum(p . q) / sum(|p|^2) and b = sum(p x q) / sum(|p|^2). On five points, plain floats cost a
    tenth of the SVD route's numpy calls, and this runs on every capture.
    """
    ps, qs = src.tolist(), dst.tolist()
    n = len(ps)
    sx, sy = sum(p[0] for p in ps) / n, sum(p[1] for p in ps) / n
    dx, dy = sum(q[0] for q in qs) / n, sum(q[1] for q in qs) / n
    dot = cross = spread = 0.0
    for (px, py), (qx, qy) in zip(ps, qs, strict=True):
        px, py, qx, qy = px - sx, py - sy, qx - dx, qy - dy
        dot += px * qx + py * qy
        cross += px * qy - py * qx
        spread += px * px + py * py
    a, b = (dot / spread, cross / spread) if spread > 0 else (1.0, 0.0)
    return np.array([[a, -b, dx - (a * sx - b * sy)], [b, a, dy - (b * sx + a * sy)]])


def _row_norms(m: np.ndarray) -> np.ndarray:
    # np.linalg.norm's generality costs more than the arithmetic on a few 512-d rows.
    return np.sqrt(np.einsum("ij,ij->i", m, m))


class Recognizer(_Timed):
    """ArcFace: aligns on 5 landmarks, embeds a batch of crops, returns L2-normalised vectors."""

    def __init__(self, path: Path, threads: int) -> None:
        model, self.session, self.model_id = load_zoo_model(path, threads)
        if getattr(model, "taskname", "") != "recognition":
            raise ModelLoadError(f"model file {path} is not an ArcFace recognition model; check "
                                 f"{MODEL_DIR_SETTING} and FLIGHTTOKEN_RECOGNIZER_FILE")
        self.input_name = self.session.get_inputs()[0].name
        self.crop_size: int = model.input_size[0]  # type: ignore[attr-defined]
        self.mean: float = model.input_mean  # type: ignore[attr-defined]
        self.std: float = model.input_std  # type: ignore[attr-defined]
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self._dst = ARCFACE_DST * (self.crop_size / 112.0)
        self._init_stats()

    def align(self, img: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        m = similarity_transform(landmarks, self._dst)
        return cv2.warpAffine(img, m, (self.crop_size, self.crop_size), borderValue=0.0)

    def prepare(self, crops: list[np.ndarray], flip: bool) -> np.ndarray:
        """(n,3,112,112) blob, or (2n,...) with the mirrored crops after the originals."""
        if flip:
            crops = [*crops, *(cv2.flip(c, 1) for c in crops)]
        size = (self.crop_size, self.crop_size)
        return cv2.dnn.blobFromImages(crops, 1.0 / self.std, size, (self.mean,) * 3, swapRB=True)

    @staticmethod
    def finish(raw: np.ndarray, n: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs → (L2-normalised float32 vectors (n, d), raw norms (n,))."""
        raw = raw.astype(np.float32, copy=False)
        lengths = _row_norms(raw)
        norms = lengths[:n]
        if flip:
            # Average the unit vectors so neither view dominates by its norm.
            unit = raw / np.maximum(lengths, 1e-12)[:, None]
            raw = unit[:n] + unit[n:]
        else:
            raw = raw[:n]
        vecs = raw / np.maximum(_row_norms(raw), 1e-12)[:, None]
        return vecs.astype(np.float32, copy=False), norms.astype(np.float32)

    def embed(self, crops: list[np.ndarray], flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if not crops:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32)
        return self.finish(self.run(self.prepare(crops, flip))[0], len(crops), flip)
