"""Face templates: an L2-normalised float32 vector tied to the model that made it.

Scores between templates of different models are meaningless (and can look plausible), so every
comparison checks the model id. Storage form is the raw little-endian float32 bytes.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from flighttoken.faces.errors import TemplateModelMismatch

_DTYPE = np.dtype("<f4")


class Template(msgspec.Struct, frozen=True, eq=False):
    model_id: str
    """``<model file stem>:<sha256 prefix>`` of the recogniser, e.g. ``w600k_mbf:9cc6e4a75f0e``."""
    vector: np.ndarray  # type: ignore[type-arg]
    """float32, shape (dim,), unit length. Encoded by :func:`enc_hook` as raw bytes (base64 in JSON)."""

    @classmethod
    def from_vector(cls, model_id: str, vector: np.ndarray) -> Template:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(v))
        if not np.isfinite(norm) or norm < 1e-6:
            raise ValueError("a template vector must be finite and non-zero")
        v = v / norm
        v.setflags(write=False)
        return cls(model_id=model_id, vector=v)

    def to_bytes(self) -> bytes:
        return self.vector.astype(_DTYPE, copy=False).tobytes()

    @classmethod
    def from_bytes(cls, model_id: str, data: bytes) -> Template:
        if len(data) % 4:
            raise ValueError("template bytes must be whole float32 values")
        return cls.from_vector(model_id, np.frombuffer(data, dtype=_DTYPE))

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])

    def similarity(self, other: Template) -> float:
        return similarity(self, other)


def check_same_model(a: Template, b: Template) -> None:
    if a.model_id != b.model_id:
        raise TemplateModelMismatch(f"cannot compare a {a.model_id} template with a {b.model_id} template; "
                                    "re-enrol with the current model", models=[a.model_id, b.model_id])


def similarity(a: Template, b: Template) -> float:
    """Cosine similarity in [-1, 1]; raises TemplateModelMismatch across models."""
    check_same_model(a, b)
    if a.vector.shape != b.vector.shape:
        raise TemplateModelMismatch("templates of the same model id have different sizes")
    return float(np.dot(a.vector, b.vector))


def enc_hook(obj: Any) -> Any:
    """msgspec ``enc_hook`` for structs holding templates."""
    if isinstance(obj, np.ndarray):
        return obj.astype(_DTYPE, copy=False).tobytes()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")
