"""The engine end to end on real photos and real models."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import cv2
import msgspec
import numpy as np
import pytest
import threadpoolctl

from flighttoken.faces.engine import FaceAnalysis, FaceEngine
from flighttoken.faces.templates import Template, enc_hook
from flighttoken.settings import Settings
from flighttoken.vocabulary import DecisionReason
from tests.faces.conftest import jpeg, to_bgr

Photo = Callable[[str, int], bytes]
SAME = [("Tony_Blair", 2, 3), ("Vladimir_Putin", 1, 3), ("Venus_Williams", 2, 4), ("Wen_Jiabao", 1, 5)]
DIFFERENT = [("Tony_Blair", "Vladimir_Putin"), ("Venus_Williams", "Wen_Jiabao"), ("Tom_Ridge", "Trent_Lott"),
             ("Walter_Mondale", "Tommy_Thompson")]
TURNED = ("Franz_Muentefering", 3)  # a profile: estimated yaw ~78°


async def template(engine: FaceEngine, photo: bytes) -> Template:
    """The subject's template whatever its quality."""
    r = await engine.analyse(photo)
    assert r.template is not None, r.quality_failures
    return r.template


def similarity(a: Template, b: Template) -> float:
    assert a.model_id == b.model_id
    return float(np.dot(a.vector, b.vector))


@pytest.mark.parametrize(("name", "a", "b"), SAME)
async def test_same_person_scores_above_verify_threshold(engine: FaceEngine, face_settings: Settings, lfw: Photo,
                                                        name: str, a: int, b: int) -> None:
    ta, tb = await asyncio.gather(template(engine, lfw(name, a)), template(engine, lfw(name, b)))
    assert similarity(ta, tb) >= face_settings.decisions.verify_threshold


@pytest.mark.parametrize(("x", "y"), DIFFERENT)
async def test_different_people_score_below_verify_threshold(engine: FaceEngine, face_settings: Settings,
                                                            lfw: Photo, x: str, y: str) -> None:
    tx, ty = await asyncio.gather(template(engine, lfw(x, 2)), template(engine, lfw(y, 2)))
    assert similarity(tx, ty) < face_settings.decisions.verify_threshold


async def test_clean_lfw_photo_passes_every_gate(engine: FaceEngine, lfw: Photo) -> None:
    r = await engine.analyse(lfw("Tony_Blair", 2))
    assert r.face_found and r.quality_ok, r.quality_failures
    assert r.quality_failures == [] and r.other_faces == 0 and not r.tailgating
    assert r.template is not None and r.template.model_id == engine.model_id
    assert r.template.vector.dtype == np.float32 and r.template.vector.shape == (512,)
    assert abs(float(np.linalg.norm(r.template.vector)) - 1.0) < 1e-5
    assert r.template_norm is not None and r.template_norm > 5  # raw ArcFace norms are ~20-30
    assert r.subject is not None and r.subject.inter_eye_px > 25
    # The result is a boundary Struct: it encodes (the template vector as raw float32 bytes).
    decoded = msgspec.json.decode(msgspec.json.encode(r, enc_hook=enc_hook))
    assert decoded["quality"]["sharpness"] == pytest.approx(r.quality.sharpness)  # type: ignore[union-attr]


async def test_group_photo_six_faces_and_tailgating(engine: FaceEngine, t1_bytes: bytes) -> None:
    r = await engine.analyse(t1_bytes)
    assert r.face_found
    assert 1 + r.other_faces == 6 and len(r.others) == 5
    assert r.tailgating  # a group of similar-sized faces: someone is sharing the lane
    assert r.subject is not None
    assert r.subject.inter_eye_px >= max(f.inter_eye_px for f in r.others) * 0.5


async def test_small_background_face_is_not_tailgating(engine: FaceEngine, lfw: Photo) -> None:
    subject = to_bgr(lfw("Tony_Blair", 2))
    other = cv2.resize(to_bgr(lfw("Vladimir_Putin", 1)), (90, 90))  # a face far behind in the queue
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[115:365, 195:445] = subject
    canvas[10:100, 540:630] = other
    r = await engine.analyse(jpeg(canvas))
    assert r.other_faces == 1
    assert not r.tailgating
    tb = await template(engine, lfw("Tony_Blair", 2))
    assert r.template is not None and similarity(r.template, tb) > 0.9  # the subject is the big central face


async def test_face_filling_the_frame_is_found(engine: FaceEngine, lfw: Photo) -> None:
    # A traveller close to the kiosk camera: the face outgrows SCRFD's anchors at full input size.
    face = to_bgr(lfw("Tony_Blair", 2))[75:175, 75:175]
    canvas = np.full((480, 640, 3), 100, np.uint8)
    canvas[:, 80:560] = cv2.resize(face, (480, 480))
    r = await engine.analyse(jpeg(canvas))
    assert r.face_found and r.subject is not None and r.subject.inter_eye_px > 150
    tb = await template(engine, lfw("Tony_Blair", 2))
    assert r.template is not None and similarity(r.template, tb) > 0.5


async def test_turned_traveller_in_the_middle_is_the_subject_not_a_frontal_face_at_the_edge(
        engine: FaceEngine, face_settings: Settings, lfw: Photo) -> None:
    # Tung_Chee-hwa_0001: he looks aside in the middle (eyes ~25 px apart); a frontal face cut by the
    # left edge has eyes ~43 px apart. Chosen by inter-eye distance, the passer-by was enrolled.
    r = await engine.analyse(lfw("Tung_Chee-hwa", 1))
    assert r.subject is not None and r.other_faces == 1
    x1, _, x2, _ = r.subject.box
    assert 60 < (x1 + x2) / 2 < 190  # the middle of the 250 px photo
    assert r.subject.inter_eye_px < r.others[0].inter_eye_px
    mate = await template(engine, lfw("Tung_Chee-hwa", 3))
    assert r.template is not None and similarity(r.template, mate) >= face_settings.decisions.verify_threshold


@pytest.mark.parametrize(("name", "number", "mate"), [("Don_Nickles", 2, 1), ("Nabil_Shaath", 2, 3)])
async def test_face_too_close_is_found_beside_a_passer_by_cut_by_the_edge(
        engine: FaceEngine, face_settings: Settings, lfw: Photo, name: str, number: int, mate: int) -> None:
    # The full-size pass sees only a small face cut by the edge; the traveller's face, filling the
    # photo, outgrows SCRFD's anchors. A subject cut by the edge earns the half-size second look.
    r = await engine.analyse(lfw(name, number))
    assert r.subject is not None and r.other_faces >= 1
    x1, y1, x2, y2 = r.subject.box
    assert x2 - x1 > 100 and y2 - y1 > 150 and 60 < (x1 + x2) / 2 < 190
    other = await template(engine, lfw(name, mate))
    assert r.template is not None and similarity(r.template, other) >= face_settings.decisions.verify_threshold


@pytest.mark.parametrize(("name", "number", "passes"), [("Tony_Blair", 2, 1), ("Don_Nickles", 2, 2)])
def test_second_look_only_when_the_subject_is_cut_by_the_edge(engine: FaceEngine, lfw: Photo, name: str,
                                                               number: int, passes: int) -> None:
    engine.detector.reset_stats()
    engine.analyse_sync(lfw(name, number))
    assert engine.detector.reset_stats().calls == passes


async def test_no_face_is_a_result_not_an_error(engine: FaceEngine) -> None:
    blank = jpeg(np.full((300, 400, 3), 90, np.uint8))
    r = await engine.analyse(blank)
    assert not r.face_found and not r.quality_ok
    assert r.quality_failures == [DecisionReason.NO_FACE]
    assert r.template is None and r.subject is None and r.quality is None


def _degrade(img: np.ndarray, how: str) -> np.ndarray:
    if how == "blur":
        return cv2.GaussianBlur(img, (0, 0), 3.0)
    if how == "dark":
        return (img.astype(np.float32) * 0.15).astype(np.uint8)
    if how == "bright":
        return np.clip(img.astype(np.int16) + 170, 0, 255).astype(np.uint8)
    if how == "tilt":
        m = cv2.getRotationMatrix2D((125, 125), 50, 1.0)
        return cv2.warpAffine(img, m, (250, 250), borderMode=cv2.BORDER_REPLICATE)
    if how == "tiny":  # traveller far from the camera: face of ~12 px between the eyes in a 640x480 frame
        canvas = np.full((480, 640, 3), 128, np.uint8)
        small = cv2.resize(img, (80, 80), interpolation=cv2.INTER_AREA)
        canvas[200:280, 280:360] = small
        return canvas
    raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "reason"),
    [("blur", DecisionReason.TOO_BLURRY), ("dark", DecisionReason.TOO_DARK), ("bright", DecisionReason.TOO_BRIGHT),
     ("tilt", DecisionReason.HEAD_TILTED), ("tiny", DecisionReason.FACE_TOO_SMALL)],
)
async def test_quality_gates_fire_on_degraded_captures(engine: FaceEngine, lfw: Photo, how: str,
                                                       reason: str) -> None:
    original = await engine.analyse(lfw("Tony_Blair", 2))
    assert reason not in original.quality_failures
    r = await engine.analyse(jpeg(_degrade(to_bgr(lfw("Tony_Blair", 2)), how)))
    assert r.face_found, f"{how}: the degraded face must still be detected"
    assert reason in r.quality_failures, (how, r.quality)
    assert r.template is not None  # still embedded: the caller decides (kiosk retake, gate refer)


async def test_turned_head_fires_head_turned(engine: FaceEngine, lfw: Photo) -> None:
    # A real profile-ish LFW photo (estimated yaw well past the limit), against a frontal one.
    r = await engine.analyse(lfw(*TURNED))
    assert r.quality is not None and DecisionReason.HEAD_TURNED in r.quality_failures, r.quality
    frontal = await engine.analyse(lfw("Tony_Blair", 2))
    assert frontal.quality is not None and abs(frontal.quality.yaw_deg) < 15


async def test_low_detection_score_gate(engine: FaceEngine, face_settings: Settings, lfw: Photo) -> None:
    # Same photo, same metrics: only the detector-score gate moves.
    strict = FaceEngine(face_settings.replace(quality_min_det_score=0.99),
                        engine.detector, engine.recognizer)
    r = await strict.analyse(lfw("Tony_Blair", 2))
    assert r.quality_failures == [DecisionReason.LOW_DETECTION_SCORE]


async def test_flip_average_changes_template_but_keeps_identity(engine: FaceEngine, face_settings: Settings,
                                                                lfw: Photo) -> None:
    flipped = FaceEngine(face_settings.replace(flip_average=not face_settings.engine.flip_average),
                         engine.detector, engine.recognizer)
    a = await template(engine, lfw("Tony_Blair", 2))
    b = await template(flipped, lfw("Tony_Blair", 2))
    assert 0.95 < similarity(a, b) < 0.99999


async def test_concurrent_requests_share_embedding_batches(engine: FaceEngine, face_settings: Settings,
                                                           lfw: Photo) -> None:
    # A wait far longer than a capture takes even on a loaded machine lets the batch fill; the
    # default (2 ms) is for latency.
    batched = FaceEngine(face_settings.replace(batch_max_wait_ms=5000.0, batch_max_size=8),
                         engine.detector, engine.recognizer)
    assert batched.batcher is not None
    photos = [lfw(name, n) for name, n, _ in SAME] + [lfw(name, m) for name, _, m in SAME]
    results: list[FaceAnalysis] = await asyncio.gather(*(batched.analyse(p) for p in photos))
    stats = batched.batcher.stats()
    assert stats.items == len(photos)
    assert stats.max_size > 1, stats
    # Batched embeddings are the same as one-at-a-time ones.
    for photo, r in zip(photos, results, strict=True):
        assert r.template is not None
        alone = engine.analyse_sync(photo).template
        assert alone is not None and similarity(r.template, alone) > 0.9999


async def test_event_loop_stays_responsive_during_analysis(engine: FaceEngine, t1_bytes: bytes) -> None:
    threads: set[str] = set()
    loop_turned: list[bool] = []
    run = engine.detector.run

    def spy(blob: np.ndarray) -> list[np.ndarray]:
        threads.add(threading.current_thread().name)
        # While inference holds this thread, the loop must keep turning: wait for the ticker to move.
        # Had inference run on the loop, it never would (and this gives up after a generous 30 s).
        seen, deadline = ticks, time.monotonic() + 30
        while ticks < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        loop_turned.append(ticks >= seen + 2)
        return run(blob)

    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    engine.detector.run = spy  # type: ignore[method-assign]
    try:
        task = asyncio.create_task(ticker())
        for _ in range(3):
            await engine.analyse(t1_bytes)
        stop.set()
        await task
    finally:
        del engine.detector.run
    assert threading.main_thread().name not in threads
    assert all(name.startswith("blocking") for name in threads)  # flighttoken.executor's pool
    # Proven per inference, not counted: how many ticks fit into an analysis depends on the machine.
    assert loop_turned and all(loop_turned), loop_turned


async def test_blocking_work_runs_with_single_threaded_blas(engine: FaceEngine, t1_bytes: bytes) -> None:
    # The executor is the parallelism: a second OpenBLAS thread only spins between gallery scans.
    await engine.analyse(t1_bytes)  # the service's executor is configured on first use
    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert blas and all(p["num_threads"] == 1 for p in blas)
