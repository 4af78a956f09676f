"""SCRFD, the face detector: letterboxing in, anchor decoding and NMS out, and the half-size second look.

Implements the :class:`~flighttoken.faces.models.Detector` protocol; its session
(faces/sessions.py) owns the runtime.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from flighttoken.faces.errors import ModelLoadError
from flighttoken.faces.models import Detections
from flighttoken.faces.sessions import MODEL_DIR_SETTING, RunStats, load_zoo_model

# Smallest input the half-size second look runs at (detector_input_size below twice this: no second look).
CLOSE_LOOK_MIN_INPUT = 160


class ScrfdDetector:
    """SCRFD with 5 landmarks on a square letterboxed input (so frames of any size can share a batch)."""

    nms_threshold = 0.4

    def __init__(self, path: Path, threads: int, input_size: int, score_threshold: float) -> None:
        model, self.session = load_zoo_model(path, threads)
        self.model_id = self.session.model_id
        if not getattr(model, "taskname", "") == "detection" or not getattr(model, "use_kps", False):
            raise ModelLoadError(f"model file {path} is not a 5-landmark SCRFD detector; check "
                                 f"{MODEL_DIR_SETTING} and FLIGHTTOKEN_DETECTOR_FILE")
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

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        return self.session.run(blob)

    def reset_stats(self) -> RunStats:
        return self.session.reset_stats()

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
            grid = np.moveaxis(np.mgrid[:side, :side][::-1], 0, -1).astype(np.float32).reshape(-1, 2) * stride
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
