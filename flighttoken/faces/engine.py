"""FaceEngine: image bytes in, a FaceAnalysis (subject face, quality verdicts, template) out.

``analyse`` raises only for unusable input (:class:`~flighttoken.faces.errors.ImageError`). "No face"
and failed quality gates are part of the result: a kiosk turns them into a 422 and a retake, a
boarding gate into a ``refer`` to staff. Blocking work leaves the event loop through run_blocking:
decoding + detection + alignment in one hop, embedding through the micro-batcher (or in the same hop
when batching is off).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import structlog

from flighttoken.executor import run_blocking
from flighttoken.faces import quality
from flighttoken.faces.admission import Admission
from flighttoken.faces.arcface import ArcFaceRecognizer
from flighttoken.faces.batcher import BatchStats, MicroBatcher
from flighttoken.faces.decode import ImageInfo, ImageLimits, decode_image
from flighttoken.faces.detect import Face, find_faces
from flighttoken.faces.models import Detector, Recognizer
from flighttoken.faces.quality import QualityMetrics, QualityThresholds
from flighttoken.faces.scrfd import ScrfdDetector
from flighttoken.faces.templates import Template
from flighttoken.settings import Settings
from flighttoken.vocabulary import DecisionReason

log = structlog.get_logger(__name__)


class FaceAnalysis(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    """Recogniser that made ``template``."""
    image: ImageInfo
    face_found: bool
    subject: Face | None
    """The traveller: the largest, most central face."""
    quality: QualityMetrics | None
    quality_failures: list[str]
    """Reason codes (``no_face``, ``face_too_small``, ``too_blurry``, ...); empty when the capture is good."""
    other_faces: int
    others: list[Face]
    tailgating: bool
    """Another face at least ``tailgating_size_ratio`` as large as the subject's."""
    template: Template | None
    """Made whenever a subject face exists, even if quality failed: the caller decides what to do."""
    template_norm: float | None
    """Norm of the raw embedding before normalisation (low for poor or non-face crops)."""

    @property
    def quality_ok(self) -> bool:
        return self.face_found and not self.quality_failures


@dataclass(slots=True)
class _Front:
    """Result of the blocking first stage: everything but the embedding."""

    info: ImageInfo
    subject: Face | None
    others: list[Face]
    tailgaters: int
    metrics: QualityMetrics | None
    crop: np.ndarray | None


class FaceEngine:
    def __init__(self, settings: Settings, detector: Detector, recognizer: Recognizer) -> None:
        self.settings = settings
        self.detector = detector
        self.recognizer = recognizer
        images = settings.images
        self.limits = ImageLimits(max_bytes=images.image_max_bytes, max_pixels=images.image_max_pixels,
                                  decode_max_side=images.image_decode_max_side,
                                  decode_max_pixels=images.decode_max_pixels)
        self.thresholds = QualityThresholds.from_settings(settings)
        self.flip = settings.engine.flip_average
        self._single_runs = 0
        self.admission = Admission(settings.engine.engine_queue_max, settings.engine.engine_device_share,
                                   settings.engine.engine_device_running)
        self.batcher: MicroBatcher[np.ndarray, tuple[np.ndarray, float]] | None = None
        if settings.engine.batch_max_size > 1:
            self.batcher = MicroBatcher(self._embed_batch, max_size=settings.engine.batch_max_size,
                                        max_wait_s=settings.engine.batch_max_wait_ms / 1000.0,
                                        max_in_flight=settings.engine.batch_max_in_flight, name="embed")

    @classmethod
    def load(cls, settings: Settings) -> FaceEngine:
        """Build the sessions (blocking, ~1 s): call through run_blocking from async code."""
        t0 = time.perf_counter()
        model_dir = Path(settings.models.resolved_model_dir())
        detector = ScrfdDetector(model_dir / settings.models.detector_file, settings.models.engine_threads,
                            settings.models.detector_input_size, settings.quality.detector_score_threshold)
        recognizer = ArcFaceRecognizer(model_dir / settings.models.recognizer_file, settings.models.engine_threads)
        engine = cls(settings, detector, recognizer)
        log.info("face_engine_loaded", detector=detector.model_id, recognizer=recognizer.model_id,
                 threads=settings.models.engine_threads, batch_max_size=settings.engine.batch_max_size,
                 flip_average=settings.engine.flip_average, seconds=round(time.perf_counter() - t0, 2))
        return engine

    @property
    def model_id(self) -> str:
        return self.recognizer.model_id

    # --- async API (the service) ---

    async def analyse(self, image_bytes: bytes) -> FaceAnalysis:
        # Bounded: a full engine queue refuses the capture at once with 503 engine_busy (admission.py).
        # Fair: a device runs at most engine_device_running of its admitted captures at once.
        with self.admission.admit():
            async with self.admission.turn():
                return await self._analyse(image_bytes)

    async def _analyse(self, image_bytes: bytes) -> FaceAnalysis:
        if self.batcher is None:
            result = await run_blocking(self.analyse_sync, image_bytes)
            if result.template is not None:
                self._single_runs += 1  # on the event loop: no lock needed
            return result
        with self.batcher.expecting():
            front = await run_blocking(self._front, image_bytes)
        if front.crop is None:
            return self._assemble(front, None)
        return self._assemble(front, await self.batcher.submit(front.crop))

    def batch_stats(self) -> BatchStats:
        """Faces per recogniser run, for /metrics: all ones when micro-batching is off."""
        if self.batcher is not None:
            return self.batcher.stats()
        n = self._single_runs
        return BatchStats(batches=n, items=n, max_size=1 if n else 0, sizes={1: n} if n else {})

    # --- synchronous API (CLI, benchmarks, worker threads) ---

    def analyse_sync(self, image_bytes: bytes) -> FaceAnalysis:
        front = self._front(image_bytes)
        if front.crop is None:
            return self._assemble(front, None)
        return self._assemble(front, self._embed_batch([front.crop])[0])

    # --- stages ---

    def _front(self, image_bytes: bytes) -> _Front:
        img, info = decode_image(image_bytes, self.limits)
        dets, scene = find_faces(self.detector, img, info.scale, self.settings.quality.tailgating_size_ratio)
        if scene.subject is None:
            return _Front(info, None, [], 0, None, None)
        i = scene.subject
        subject = scene.faces[i]
        landmarks = dets.landmarks[i]
        crop = self.recognizer.align(img, landmarks)
        metrics = quality.measure(crop, landmarks, subject.det_score, subject.inter_eye_px)
        others = [f for j, f in enumerate(scene.faces) if j != i]
        return _Front(info, subject, others, scene.tailgaters, metrics, crop)

    def _embed_batch(self, crops: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        vecs, norms = self.recognizer.embed(crops, flip=self.flip)
        return [(vecs[k], float(norms[k])) for k in range(len(crops))]

    def _assemble(self, front: _Front, embedded: tuple[np.ndarray, float] | None) -> FaceAnalysis:
        template = norm = None
        if embedded is not None:
            template = Template.from_vector(self.model_id, embedded[0])
            norm = round(embedded[1], 3)
        if front.subject is None or front.metrics is None:
            failures: list[str] = [DecisionReason.NO_FACE]
        else:
            failures = quality.failures(front.metrics, self.thresholds)
        return FaceAnalysis(model_id=self.model_id, image=front.info, face_found=front.subject is not None,
                            subject=front.subject, quality=front.metrics, quality_failures=failures,
                            other_faces=len(front.others), others=front.others,
                            tailgating=front.tailgaters > 0, template=template, template_norm=norm)
