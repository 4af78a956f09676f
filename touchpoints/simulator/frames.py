"""The frame a touchpoint camera takes when a passenger retakes with no new LFW photo left.

An LFW photo is a 250 px news photo centred on its subject, often with other people at its edges.
A real retake is a new frame: the passenger steps up alone, the people behind step back. The
simulator emulates it by keeping the photo's centre (``Options.alone_crop`` of each side), which
holds the subject's face at its original size and leaves most bystanders out of frame. The service
still judges the crop like any capture: a face left in it is still a tailgater.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def alone_frame(photo: Path, keep: float) -> bytes:
    """The centre of ``photo`` (``keep`` of each side), as JPEG bytes."""
    img = cv2.imdecode(np.frombuffer(photo.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{photo}: not an image")
    h, w = img.shape[:2]
    ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
    top, left = (h - ch) // 2, (w - cw) // 2
    ok, jpeg = cv2.imencode(".jpg", img[top:top + ch, left:left + cw], [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ValueError(f"{photo}: cannot encode the crop")
    return jpeg.tobytes()
