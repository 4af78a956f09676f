"""What the engine needs of a face detector and a face recogniser: the Detector and Recognizer Protocols.

The model classes (faces/scrfd.py, faces/arcface.py) own their pre- and post-processing; their
sessions (faces/sessions.py) own the runtime. Each model has ``prepare`` → ``run`` →
``decode``/``finish`` steps so a benchmark can time ``run`` alone (the raw onnxruntime cost) on
exactly the tensors the engine feeds it, and each keeps running totals of its raw run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from flighttoken.faces.sessions import RunStats


@dataclass(frozen=True, slots=True)
class Detections:
    boxes: np.ndarray  # (n, 4) x1, y1, x2, y2 in image pixels, best score first
    scores: np.ndarray  # (n,)
    landmarks: np.ndarray  # (n, 5, 2): right eye, left eye (image left to right), nose, mouth corners

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class Model(Protocol):
    model_id: str
    """``<model file stem>:<sha256 prefix>``."""

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """Exactly one raw model run on a prepared blob."""
        ...

    def reset_stats(self) -> RunStats:
        """Raw run totals since the last reset; starts new ones."""
        ...


class Detector(Model, Protocol):
    """Faces with five landmarks each, in image pixels."""

    input_size: int

    def prepare(self, img: np.ndarray, size: int | None = None) -> tuple[np.ndarray, float]:
        """The (1,3,S,S) blob of a BGR image and the scale from image to blob pixels."""
        ...

    def decode(self, outputs: list[np.ndarray], scale: float, index: int = 0, size: int | None = None) -> Detections:
        ...

    def detect(self, img: np.ndarray) -> Detections:
        """The full-size pass."""
        ...

    def add_close_faces(self, img: np.ndarray, found: Detections) -> Detections:
        """``found`` plus the faces too close to the camera for the full-size pass."""
        ...


class Recognizer(Model, Protocol):
    """Aligned face crops in, L2-normalised embeddings out."""

    crop_size: int
    dim: int

    def align(self, img: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The ``crop_size``-square crop aligned on five landmarks."""
        ...

    def prepare(self, crops: list[np.ndarray], flip: bool) -> np.ndarray:
        ...

    def finish(self, raw: np.ndarray, n: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs → (L2-normalised float32 vectors (n, d), raw norms (n,))."""
        ...

    def embed(self, crops: list[np.ndarray], flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        ...
