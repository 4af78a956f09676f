"""Face engine fixtures: real models, real LFW photos (the test fails if the photos are missing)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from flighttoken.faces.engine import FaceEngine
from flighttoken.settings import Settings, load_settings


@pytest.fixture(scope="session")
def face_settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def lfw_dir(face_settings: Settings) -> Path:
    root = Path(face_settings.faces_dir) / "lfw-train"
    # Fail, never skip: a missing data folder must not turn the face suite green.
    assert root.is_dir(), f"LFW photos not found at {root}; set FLIGHTTOKEN_FACES_DIR"
    return root


@pytest.fixture(scope="session")
def engine(face_engine: FaceEngine) -> FaceEngine:
    """The session's one engine (tests/conftest.py): loading the models twice costs seconds and memory."""
    return face_engine


@pytest.fixture(scope="session")
def lfw(lfw_dir: Path) -> Callable[[str, int], bytes]:
    def photo(name: str, number: int = 1) -> bytes:
        path = lfw_dir / name / f"{name}_{number:04d}.jpg"
        assert path.is_file(), f"missing LFW photo {path}"
        return path.read_bytes()

    return photo


@pytest.fixture(scope="session")
def t1_bytes() -> bytes:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations
    return (Path(next(iter(spec.submodule_search_locations))) / "data" / "images" / "t1.jpg").read_bytes()


def to_bgr(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()
