"""ArcFace, the face recogniser: alignment on five landmarks in, flip-averaged unit vectors out.

Implements the :class:`~flighttoken.faces.models.Recognizer` protocol; its session
(faces/sessions.py) owns the runtime.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from flighttoken.faces.errors import ModelLoadError
from flighttoken.faces.sessions import MODEL_DIR_SETTING, RunStats, load_zoo_model

# ArcFace's canonical 5-point template for a 112x112 crop (eyes, nose tip, mouth corners).
ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


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


class ArcFaceRecognizer:
    """ArcFace: aligns on 5 landmarks, embeds a batch of crops, returns L2-normalised vectors."""

    def __init__(self, path: Path, threads: int) -> None:
        model, self.session = load_zoo_model(path, threads)
        self.model_id = self.session.model_id
        if getattr(model, "taskname", "") != "recognition":
            raise ModelLoadError(f"model file {path} is not an ArcFace recognition model; check "
                                 f"{MODEL_DIR_SETTING} and FLIGHTTOKEN_RECOGNIZER_FILE")
        self.crop_size: int = model.input_size[0]  # type: ignore[attr-defined]
        self.mean: float = model.input_mean  # type: ignore[attr-defined]
        self.std: float = model.input_std  # type: ignore[attr-defined]
        self.dim = self.session.output_dim()
        self._dst = ARCFACE_DST * (self.crop_size / 112.0)

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        return self.session.run(blob)

    def reset_stats(self) -> RunStats:
        return self.session.reset_stats()

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
