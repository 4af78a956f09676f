"""From detections to a scene: the subject face, the others, and whether someone is tailgating.

At a kiosk or e-gate the traveller is the face nearest the camera and roughly centred; faces
behind them are normal (a queue), but a second face about as large is someone sharing the lane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec
import numpy as np

from flighttoken.faces.models import Detections

# A face in a corner must have twice the inter-eye distance of a centred one to be taken as the
# subject: size dominates (nearest person), centring breaks near-ties (two travellers side by side).
CENTRING_WEIGHT = 0.5


class Face(msgspec.Struct, frozen=True):
    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 in original image pixels."""
    landmarks: tuple[tuple[float, float], ...]
    """Five points (x, y): eyes (image left to right), nose tip, mouth corners (left to right)."""
    det_score: float
    inter_eye_px: float


@dataclass(frozen=True, slots=True)
class Scene:
    subject: int | None  # index into the detections
    faces: list[Face]
    other_faces: int
    tailgaters: int


def inter_eye_distances(landmarks: np.ndarray) -> np.ndarray:
    return np.linalg.norm(landmarks[:, 1] - landmarks[:, 0], axis=1)


def subject_scores(dets: Detections, width: int, height: int) -> np.ndarray:
    """Inter-eye distance, discounted by up to ``CENTRING_WEIGHT`` for distance from the centre."""
    ied = inter_eye_distances(dets.landmarks)
    centres = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
    half_diag = math.hypot(width, height) / 2
    off = np.linalg.norm(centres - np.array([width / 2, height / 2]), axis=1) / max(half_diag, 1e-6)
    return ied * (1.0 - CENTRING_WEIGHT * np.clip(off, 0.0, 1.0))


def analyse_scene(dets: Detections, width: int, height: int, scale: float, tailgating_ratio: float) -> Scene:
    """``width``/``height`` are of the decoded image; ``scale`` maps decoded to original pixels."""
    if len(dets) == 0:
        return Scene(subject=None, faces=[], other_faces=0, tailgaters=0)
    ied = inter_eye_distances(dets.landmarks)
    subject = int(np.argmax(subject_scores(dets, width, height)))
    tailgaters = int(np.sum(ied >= tailgating_ratio * ied[subject])) - 1
    faces = [
        Face(box=tuple(float(v) * scale for v in dets.boxes[i]),  # type: ignore[arg-type]
             landmarks=tuple((float(x) * scale, float(y) * scale) for x, y in dets.landmarks[i]),
             det_score=float(dets.scores[i]), inter_eye_px=float(ied[i]) * scale)
        for i in range(len(dets))
    ]
    return Scene(subject=subject, faces=faces, other_faces=len(dets) - 1, tailgaters=tailgaters)
