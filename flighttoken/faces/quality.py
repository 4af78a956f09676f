"""Capture-quality metrics and gates, each failing with a reason code a kiosk can show.

Pixel metrics are measured on the aligned 112x112 crop (what the recogniser actually sees), pose on
the detector's landmarks. Default thresholds come from the LFW measurements printed by
``ops/bench/accuracy.py`` (see its ``quality`` section): each gate passes nearly all LFW photos and
fires on the synthetic degradations in ``tests/faces``.
"""

from __future__ import annotations

import math

import cv2
import msgspec
import numpy as np

from flighttoken.settings import Settings
from flighttoken.vocabulary import DecisionReason

# Reason codes come from the one vocabulary (flighttoken/vocabulary.py), shown to travellers through
# the kiosk's own wording.
R = DecisionReason

# Face region of the ArcFace 112x112 crop (brows to chin, cheek to cheek): the background and the
# black fill of warpAffine outside it must not count towards sharpness or exposure.
_REGION = (slice(28, 104), slice(24, 88))
# Nose-tip depth in front of the eyes/mouth plane, as a fraction of the inter-eye distance
# (adult anthropometry: ~30 mm against ~63 mm); turns the nose's sideways offset into a yaw angle.
_NOSE_DEPTH = 0.5
_DARK, _BRIGHT = 16, 240  # grey levels counted as clipped


class QualityMetrics(msgspec.Struct, frozen=True):
    det_score: float
    inter_eye_px: float
    sharpness: float
    """Variance of the Laplacian of the crop's face region (higher is sharper)."""
    brightness: float
    """Mean grey level of the face region, 0-255."""
    dark_fraction: float
    bright_fraction: float
    """Share of face-region pixels at or below 16 / at or above 240."""
    yaw_deg: float
    """Estimated head turn from the landmarks; positive: nose towards the image's right."""
    roll_deg: float
    """Tilt of the eye line; positive: clockwise in the image."""


class QualityThresholds(msgspec.Struct, frozen=True):
    min_det_score: float
    min_inter_eye_px: float
    min_sharpness: float
    min_brightness: float
    max_brightness: float
    max_clipped_fraction: float
    max_yaw_deg: float
    max_roll_deg: float

    @classmethod
    def from_settings(cls, s: Settings) -> QualityThresholds:
        return cls(min_det_score=s.quality.quality_min_det_score, min_inter_eye_px=s.quality.quality_min_inter_eye_px,
                   min_sharpness=s.quality.quality_min_sharpness, min_brightness=s.quality.quality_min_brightness,
                   max_brightness=s.quality.quality_max_brightness,
                   max_clipped_fraction=s.quality.quality_max_clipped_fraction,
                   max_yaw_deg=s.quality.quality_max_yaw_deg, max_roll_deg=s.quality.quality_max_roll_deg)


def pose(landmarks: np.ndarray) -> tuple[float, float]:
    """(yaw, roll) in degrees from five landmarks; coarse, but enough to say "look at the camera"."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_l, eye_r = lm[0], lm[1]
    dx, dy = eye_r - eye_l
    roll = math.atan2(dy, dx)
    ied = math.hypot(dx, dy)
    if ied < 1e-6:
        return 0.0, 0.0
    # Undo the roll, then compare the nose tip with the face's midline (eyes' and mouth's midpoints).
    c, s = math.cos(-roll), math.sin(-roll)
    rot = np.array([[c, -s], [s, c]])
    pts = (lm - (eye_l + eye_r) / 2) @ rot.T
    midline_x = (0.0 + (pts[3, 0] + pts[4, 0]) / 2) / 2
    offset = (pts[2, 0] - midline_x) / ied
    yaw = math.atan(offset / _NOSE_DEPTH)
    return math.degrees(yaw), math.degrees(roll)


def measure(crop: np.ndarray, landmarks: np.ndarray, det_score: float, inter_eye_px: float) -> QualityMetrics:
    gray = cv2.cvtColor(crop[_REGION], cv2.COLOR_BGR2GRAY)
    _, spread = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_32F))
    sharpness = float(spread[0, 0]) ** 2  # Laplacian variance, in one C call instead of numpy's several
    mean = cv2.mean(gray)[0]
    n = gray.size
    dark = float(np.count_nonzero(gray <= _DARK)) / n
    bright = float(np.count_nonzero(gray >= _BRIGHT)) / n
    yaw, roll = pose(landmarks)
    return QualityMetrics(det_score=round(det_score, 4), inter_eye_px=round(inter_eye_px, 2),
                          sharpness=round(sharpness, 2), brightness=round(mean, 2),
                          dark_fraction=round(dark, 4), bright_fraction=round(bright, 4),
                          yaw_deg=round(yaw, 2), roll_deg=round(roll, 2))


def failures(m: QualityMetrics, t: QualityThresholds) -> list[str]:
    """Reason codes, in the order a kiosk should address them (get closer before hold still)."""
    out: list[str] = []
    if m.det_score < t.min_det_score:
        out.append(R.LOW_DETECTION_SCORE)
    if m.inter_eye_px < t.min_inter_eye_px:
        out.append(R.FACE_TOO_SMALL)
    if m.brightness < t.min_brightness or m.dark_fraction > t.max_clipped_fraction:
        out.append(R.TOO_DARK)
    if m.brightness > t.max_brightness or m.bright_fraction > t.max_clipped_fraction:
        out.append(R.TOO_BRIGHT)
    if abs(m.yaw_deg) > t.max_yaw_deg:
        out.append(R.HEAD_TURNED)
    if abs(m.roll_deg) > t.max_roll_deg:
        out.append(R.HEAD_TILTED)
    # Laplacian variance scales with contrast: on a badly exposed crop it says nothing about focus.
    if m.sharpness < t.min_sharpness and R.TOO_DARK not in out and R.TOO_BRIGHT not in out:
        out.append(R.TOO_BLURRY)
    return out
