"""From detections to a scene: the subject face, the others, and whether someone is tailgating.

At a kiosk or e-gate the traveller is the face nearest the camera and roughly centred; faces
behind them are normal (a queue), but a second face about as large is someone sharing the lane.
A face's size is its box's (the square root of its area), not its inter-eye distance: the eyes
draw together when a head turns, and on LFW that let a frontal bystander at the edge win over a
turned traveller in the middle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec
import numpy as np

from flighttoken.faces.models import Detections, Detector

# A face in a corner must be twice the size of a centred one to be taken as the subject: size
# dominates (nearest person), centring breaks near-ties (two travellers side by side).
CENTRING_WEIGHT = 0.5
# A box this close to the frame's edge (share of the shorter side) is cut off by it: SCRFD puts a
# cut face's box a few pixels inside the frame, not on its edge.
EDGE_SHARE = 0.02


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


def face_sizes(boxes: np.ndarray) -> np.ndarray:
    """Square root of each box's area: how near the camera a face is, whichever way it turns."""
    wh = np.clip(boxes[:, 2:] - boxes[:, :2], 0.0, None)
    return np.sqrt(wh[:, 0] * wh[:, 1])


def subject_scores(boxes: np.ndarray, sizes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Face size, discounted by up to ``CENTRING_WEIGHT`` for distance from the centre."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half_diag = math.hypot(width, height) / 2
    off = np.linalg.norm(centres - np.array([width / 2, height / 2]), axis=1) / max(half_diag, 1e-6)
    return sizes * (1.0 - CENTRING_WEIGHT * np.clip(off, 0.0, 1.0))


def cut_by_edge(box: np.ndarray, width: int, height: int) -> bool:
    x1, y1, x2, y2 = (float(v) for v in box)
    m = EDGE_SHARE * min(width, height)
    return x1 <= m or y1 <= m or x2 >= width - 1 - m or y2 >= height - 1 - m


def analyse_scene(dets: Detections, width: int, height: int, scale: float, tailgating_ratio: float) -> Scene:
    """``width``/``height`` are of the decoded image; ``scale`` maps decoded to original pixels."""
    if len(dets) == 0:
        return Scene(subject=None, faces=[], other_faces=0, tailgaters=0)
    sizes = face_sizes(dets.boxes)
    subject = int(np.argmax(subject_scores(dets.boxes, sizes, width, height)))
    tailgaters = int(np.sum(sizes >= tailgating_ratio * sizes[subject])) - 1
    ied = inter_eye_distances(dets.landmarks)
    faces = [
        Face(box=tuple(float(v) * scale for v in dets.boxes[i]),  # type: ignore[arg-type]
             landmarks=tuple((float(x) * scale, float(y) * scale) for x, y in dets.landmarks[i]),
             det_score=float(dets.scores[i]), inter_eye_px=float(ied[i]) * scale)
        for i in range(len(dets))
    ]
    return Scene(subject=subject, faces=faces, other_faces=len(dets) - 1, tailgaters=tailgaters)


def find_faces(detector: Detector, img: np.ndarray, scale: float, tailgating_ratio: float) -> tuple[Detections, Scene]:
    """Detections and scene of a decoded frame.

    The full-size pass misses a face too close to the camera. When it finds no face, or its subject
    is cut off by the frame's edge (perhaps a passer-by, while the traveller's face fills the
    frame), a half-size pass looks again. On LFW, 5 photos in 7,371 take the second look.
    """
    h, w = img.shape[:2]
    dets = detector.detect(img)
    scene = analyse_scene(dets, w, h, scale, tailgating_ratio)
    if scene.subject is None or cut_by_edge(dets.boxes[scene.subject], w, h):
        dets = detector.add_close_faces(img, dets)
        scene = analyse_scene(dets, w, h, scale, tailgating_ratio)
    return dets, scene
