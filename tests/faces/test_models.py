"""Model loading refuses clearly, settings validate, and the batcher keeps its contract."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from flighttoken.faces.arcface import ARCFACE_DST, ArcFaceRecognizer, similarity_transform
from flighttoken.faces.batcher import MicroBatcher
from flighttoken.faces.engine import FaceEngine
from flighttoken.faces.errors import ModelLoadError
from flighttoken.faces.scrfd import ScrfdDetector
from flighttoken.settings import Settings, SettingsError, load_settings


def test_missing_model_file_names_file_and_setting(tmp_path: Path, face_settings: Settings) -> None:
    settings = load_settings(model_dir=str(tmp_path))
    with pytest.raises(ModelLoadError) as exc:
        FaceEngine.load(settings)
    message = str(exc.value)
    assert str(tmp_path / face_settings.models.detector_file) in message
    assert "FLIGHTTOKEN_MODEL_DIR" in message and "\n" not in message


def test_corrupt_model_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "w600k_mbf.onnx"
    bad.write_bytes(b"\x08\x07not really a protobuf" * 100)
    with pytest.raises(ModelLoadError) as exc:
        ArcFaceRecognizer(bad, threads=1)
    assert str(bad) in str(exc.value) and "FLIGHTTOKEN_MODEL_DIR" in str(exc.value)


@pytest.mark.integration  # opens a real model file with onnxruntime
def test_model_of_the_wrong_kind_is_refused(face_settings: Settings) -> None:
    recognizer_file = Path(face_settings.models.resolved_model_dir()) / face_settings.models.recognizer_file
    with pytest.raises(ModelLoadError, match="not a 5-landmark SCRFD detector"):
        ScrfdDetector(recognizer_file, threads=1, input_size=640, score_threshold=0.5)


def test_model_ids_name_the_file_and_its_weights(engine: FaceEngine) -> None:
    stem, digest = engine.model_id.split(":")
    assert stem == Path(engine.settings.models.recognizer_file).stem
    assert len(digest) == 12 and int(digest, 16) >= 0
    assert engine.detector.model_id.startswith(Path(engine.settings.models.detector_file).stem + ":")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FLIGHTTOKEN_IMAGE_MAX_BYTES": "0"}, "FLIGHTTOKEN_IMAGE_MAX_BYTES"),
        ({"FLIGHTTOKEN_DETECTOR_INPUT_SIZE": "500"}, "FLIGHTTOKEN_DETECTOR_INPUT_SIZE"),
        ({"FLIGHTTOKEN_TAILGATING_SIZE_RATIO": "1.5"}, "FLIGHTTOKEN_TAILGATING_SIZE_RATIO"),
        ({"FLIGHTTOKEN_QUALITY_MIN_BRIGHTNESS": "220", "FLIGHTTOKEN_QUALITY_MAX_BRIGHTNESS": "200"},
         "FLIGHTTOKEN_QUALITY_MAX_BRIGHTNESS"),
        ({"FLIGHTTOKEN_BATCH_MAX_WAIT_MS": "500"}, "FLIGHTTOKEN_BATCH_MAX_WAIT_MS"),
        ({"FLIGHTTOKEN_VERIFY_THRESHOLD": "1.5"}, "FLIGHTTOKEN_VERIFY_THRESHOLD"),
        ({"FLIGHTTOKEN_FLIP_AVERAGE": "maybe"}, "FLIGHTTOKEN_FLIP_AVERAGE"),
    ],
)
def test_face_engine_settings_are_validated(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load_settings(env)
    assert named in str(exc.value)


def test_alignment_estimate_is_the_one_insightface_norm_crop_makes() -> None:
    # The recogniser was trained on crops aligned by skimage's similarity estimate; ours is its
    # closed form and must agree on faces of any size, rotation and landmark noise.
    rng = np.random.default_rng(3)
    for _ in range(500):
        theta = rng.uniform(-1.2, 1.2)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        src = (ARCFACE_DST * rng.uniform(0.3, 4.0) + rng.normal(0, 5, (5, 2))) @ rot.T + rng.uniform(0, 600, 2)
        src = src.astype(np.float32)
        expected = SimilarityTransform.from_estimate(src, ARCFACE_DST).params[:2]
        assert similarity_transform(src, ARCFACE_DST) == pytest.approx(expected, rel=1e-6, abs=1e-3)


async def test_batcher_respects_max_size_and_order() -> None:
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        assert threading.current_thread() is not threading.main_thread()
        calls.append(items)
        return [x * 10 for x in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_size=3, max_wait_s=0.05)
    with batcher.expecting():  # someone is on the way: the first batch waits to fill up to 3
        results = await asyncio.gather(*(batcher.submit(i) for i in range(7)))
    assert results == [i * 10 for i in range(7)]
    assert all(len(c) <= 3 for c in calls) and sum(map(len, calls)) == 7
    assert batcher.stats().max_size == 3


async def test_lone_item_is_not_held_back() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda xs: xs, max_size=8, max_wait_s=30.0)
    # Nothing else expected: dispatched at once (a 30 s wait would time the test out).
    assert await asyncio.wait_for(batcher.submit(5), timeout=10) == 5


async def test_batch_failure_reaches_every_caller() -> None:
    def boom(items: list[int]) -> list[int]:
        raise RuntimeError("model crashed")

    batcher: MicroBatcher[int, int] = MicroBatcher(boom, max_size=4, max_wait_s=0.0)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_batches_run_concurrently_up_to_max_in_flight() -> None:
    # Each batch waits at the barrier for another one: it only passes if two run at the same time.
    barrier = threading.Barrier(2, timeout=20)

    def run(items: list[int]) -> list[int]:
        barrier.wait()
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_size=1, max_wait_s=0.0, max_in_flight=2)
    assert await asyncio.gather(batcher.submit(1), batcher.submit(2)) == [1, 2]
    assert batcher.stats().sizes == {1: 2}
