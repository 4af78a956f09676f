"""Subject choice and tailgating from detections alone (no models: the geometry is the behaviour)."""

from __future__ import annotations

import numpy as np

from flighttoken.faces.detect import analyse_scene, cut_by_edge
from flighttoken.faces.models import Detections

W, H = 640, 480


def face(x1: float, y1: float, x2: float, y2: float, eye_gap: float) -> tuple[list[float], np.ndarray]:
    """A box and five landmarks whose eyes are ``eye_gap`` apart (small when the head is turned)."""
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    lm = np.array([[cx - eye_gap / 2, cy - 10], [cx + eye_gap / 2, cy - 10], [cx, cy], [cx - 10, cy + 15],
                   [cx + 10, cy + 15]], np.float32)
    return [x1, y1, x2, y2], lm


def detections(*faces: tuple[list[float], np.ndarray]) -> Detections:
    return Detections(np.array([f[0] for f in faces], np.float32), np.full(len(faces), 0.8, np.float32),
                      np.stack([f[1] for f in faces]))


def test_turned_traveller_in_the_middle_beats_a_frontal_passer_by() -> None:
    # The traveller looks aside: eyes 30 px apart in a 160 px box. The passer-by faces the camera,
    # eyes 45 px apart in a smaller box off to the side. Inter-eye distance would pick the passer-by.
    traveller = face(240, 160, 400, 340, eye_gap=30)
    passer_by = face(20, 60, 140, 200, eye_gap=45)
    scene = analyse_scene(detections(passer_by, traveller), W, H, 1.0, tailgating_ratio=0.6)
    assert scene.subject == 1
    assert scene.faces[1].inter_eye_px < scene.faces[0].inter_eye_px
    assert scene.tailgaters == 1  # 120-140 px against 160-180 px: comparable size, someone sharing the lane


def test_face_far_behind_is_neither_subject_nor_tailgater() -> None:
    traveller = face(240, 160, 400, 340, eye_gap=50)
    behind = face(560, 20, 620, 90, eye_gap=20)
    scene = analyse_scene(detections(behind, traveller), W, H, 1.0, tailgating_ratio=0.6)
    assert scene.subject == 1 and scene.other_faces == 1 and scene.tailgaters == 0


def test_size_beats_centring_only_by_a_clear_margin() -> None:
    centred = face(260, 180, 380, 300, eye_gap=40)  # 120 px, in the middle
    corner_big = face(0, 0, 170, 170, eye_gap=60)  # 170 px, in the corner: discounted by ~35 %
    corner_huge = face(0, 0, 280, 280, eye_gap=80)  # 280 px: nearer the camera by far
    assert analyse_scene(detections(corner_big, centred), W, H, 1.0, 0.6).subject == 1
    assert analyse_scene(detections(corner_huge, centred), W, H, 1.0, 0.6).subject == 0


def test_cut_by_edge() -> None:
    assert cut_by_edge(np.array([0.5, 100, 120, 220]), W, H)
    assert cut_by_edge(np.array([5, 100, 120, 220]), W, H)  # a cut face's box lands a few pixels inside
    assert cut_by_edge(np.array([500, 100, 639, 220]), W, H)
    assert cut_by_edge(np.array([200, -8, 320, 100]), W, H)
    assert not cut_by_edge(np.array([200, 100, 320, 220]), W, H)
    assert not cut_by_edge(np.array([10, 100, 120, 220]), W, H)  # the margin is 2 % of 480 px: 9.6 px
