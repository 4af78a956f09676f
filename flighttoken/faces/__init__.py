"""The face engine: decoding, detection, quality gates, templates (see engine.FaceEngine)."""

from flighttoken.faces.engine import FaceAnalysis, FaceEngine
from flighttoken.faces.errors import (
    ImageError,
    ImageNotDecodable,
    ImageTooLarge,
    ImageTruncated,
    ImageUnsupportedFormat,
    ModelLoadError,
)
from flighttoken.faces.templates import Template

__all__ = [
    "FaceAnalysis",
    "FaceEngine",
    "ImageError",
    "ImageNotDecodable",
    "ImageTooLarge",
    "ImageTruncated",
    "ImageUnsupportedFormat",
    "ModelLoadError",
    "Template",
]
