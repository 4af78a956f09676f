"""The simulator's retake when a passenger's LFW photos are used up: the photo's centre, the rest cut."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from touchpoints.simulator.frames import alone_frame

pytestmark = pytest.mark.unit


def test_the_alone_frame_is_the_photos_centre_at_its_original_scale(tmp_path: Path) -> None:
    img = np.zeros((250, 250, 3), np.uint8)
    img[100:150, 100:150] = 255  # the subject, centred
    img[0:40, 0:40] = 128  # someone at the edge of the frame
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), img)
    crop = cv2.imdecode(np.frombuffer(alone_frame(photo, 0.64), np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None, "the alone frame is not a decodable image"
    assert crop.shape[:2] == (160, 160)
    # The subject keeps its size and place at the centre; the person at the edge is out of frame.
    assert crop[60:100, 60:100].mean() > 240
    assert crop[:10, :10].mean() < 10


def test_an_unreadable_photo_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"bad\.jpg"):
        alone_frame(bad, 0.64)
