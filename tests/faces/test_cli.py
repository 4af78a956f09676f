"""``flighttoken faces check``: readable facts per image, and an exit code a script can use."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from flighttoken.cli import build_parser
from flighttoken.cli.faces import check_images
from flighttoken.settings import Settings, load_settings
from tests.faces.conftest import jpeg, to_bgr

pytestmark = pytest.mark.integration  # the real models, through the CLI


def test_good_photo_passes(lfw_dir: Path, face_settings: Settings) -> None:
    out = io.StringIO()
    code = check_images([lfw_dir / "Tony_Blair" / "Tony_Blair_0002.jpg"], face_settings, out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "verdict: PASS" in text and "1/1 passed" in text
    assert "w600k_mbf:" in text and "512-d" in text and "norm before normalisation" in text
    assert "inter-eye" in text and "sharpness" in text


def test_any_failing_image_makes_the_exit_code_non_zero(tmp_path: Path, lfw: Callable[[str, int], bytes],
                                                        face_settings: Settings) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(lfw("Tony_Blair", 2))
    text_file = tmp_path / "notes.jpg"
    text_file.write_bytes(b"not a photo")
    blurry = tmp_path / "blurry.jpg"
    blurry.write_bytes(jpeg(cv2.GaussianBlur(to_bgr(lfw("Tony_Blair", 2)), (0, 0), 3.0)))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(jpeg(np.full((200, 200, 3), 80, np.uint8)))
    out = io.StringIO()
    paths = [good, text_file, blurry, empty, tmp_path / "missing.jpg"]
    code = check_images(paths, face_settings, out=out)
    text = out.getvalue()
    assert code == 1
    assert "image_not_decodable" in text and "too_blurry" in text and "no_face" in text
    assert "unreadable" in text and "1/5 passed" in text


def test_missing_models_exit_2(tmp_path: Path) -> None:
    out = io.StringIO()
    assert check_images(["x.jpg"], load_settings(model_dir=str(tmp_path)), out=out) == 2
    assert "FLIGHTTOKEN_MODEL_DIR" in out.getvalue()


def test_subcommand_wiring(lfw_dir: Path, face_settings: Settings) -> None:
    args = build_parser().parse_args(["faces", "check", str(lfw_dir / "Tony_Blair" / "Tony_Blair_0002.jpg")])
    assert args.run(face_settings, args) == 0
