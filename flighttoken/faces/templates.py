"""Face templates: an L2-normalised float32 vector tied to the model that made it.

Scores between templates of different models are meaningless (and can look plausible), so a
template carries its model id. Storage form is the raw little-endian float32 bytes.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

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

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])


def enc_hook(obj: Any) -> Any:
    """msgspec ``enc_hook`` for structs holding templates."""
    if isinstance(obj, np.ndarray):
        return obj.astype(_DTYPE, copy=False).tobytes()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")
