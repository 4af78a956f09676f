"""The onnxruntime side of the face models: tuned sessions, model loading, raw run timing.

A session owns the runtime (threads, spinning, optimisation) and counts its raw ``session.run``
time; the model classes (faces/scrfd.py, faces/arcface.py) own what goes in and comes out.
Models are routed through insightface's model zoo, which reads their metadata (strides, anchors,
mean/std, input size) from the file itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import onnxruntime as ort

from flighttoken.faces.errors import ModelLoadError

MODEL_DIR_SETTING = "FLIGHTTOKEN_MODEL_DIR"


def build_session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # Spinning workers burn the other session's core: two sessions go from ~20 ms to ~65 ms each.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # w600k_mbf declares a fixed batch of 1 on its output; every batched run would log a warning.
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def file_model_id(path: Path) -> str:
    """``<stem>:<sha256 prefix>``: two files with one name but different weights never share an id."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{path.stem}:{digest.hexdigest()[:12]}"


@dataclass
class RunStats:
    """Raw ``session.run`` totals since the last reset (the benchmark's model-only time)."""

    calls: int = 0
    items: int = 0
    seconds: float = 0.0


class TimedSession:
    """One tuned onnxruntime session with a single input, keeping running totals of its raw run time."""

    def __init__(self, session: ort.InferenceSession, model_id: str) -> None:
        self.session = session
        self.model_id = model_id
        self.input_name = session.get_inputs()[0].name
        self._lock = threading.Lock()
        self.stats = RunStats()

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """Exactly one ``session.run``: the raw model cost, nothing else."""
        t0 = time.perf_counter()
        out = self.session.run(None, {self.input_name: blob})
        dt = time.perf_counter() - t0
        with self._lock:
            self.stats.calls += 1
            self.stats.items += blob.shape[0]
            self.stats.seconds += dt
        return cast("list[np.ndarray]", out)  # one dense output per name: never sparse or a map

    def reset_stats(self) -> RunStats:
        with self._lock:
            old, self.stats = self.stats, RunStats()
        return old

    def output_dim(self) -> int:
        return int(self.session.get_outputs()[0].shape[-1])


def load_zoo_model(path: Path, threads: int) -> tuple[object, TimedSession]:
    """Route ``path`` through insightface's model zoo, then swap in our tuned session.

    get_model() cannot take SessionOptions and prints to stdout; it never downloads for a path
    ending in ``.onnx``, and we check the file exists first so its assert never fires.
    """
    if not path.is_file():
        raise ModelLoadError(f"model file {path} not found; set {MODEL_DIR_SETTING} to the folder that holds "
                             f"{path.name}")
    from insightface import model_zoo  # deferred: pulls in onnx and friends

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
        if model is None:
            raise ValueError("not a detector or recognition model insightface knows")
        session = build_session(path, threads)
    except Exception as exc:  # onnxruntime raises its own hierarchy; anything here is fatal
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"model file {path} cannot be loaded ({reason}); check {MODEL_DIR_SETTING}") from None
    model.session = session  # type: ignore[attr-defined]
    return model, TimedSession(session, file_model_id(path))
