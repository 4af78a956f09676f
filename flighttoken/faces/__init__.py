"""The face engine: decoding, detection, quality gates, templates (see engine.FaceEngine)."""

from flighttoken.faces.engine import FaceAnalysis, FaceEngine
from flighttoken.faces.errors import (
    ImageError,
    ImageNotDecodable,
    ImageTooLarge,
    ImageTruncated,
    ImageUnsupportedFormat,
    ModelLoadError,
    NoFace,
    TemplateModelMismatch,
)
from flighttoken.faces.templates import Template, similarity

__all__ = [
    "FaceAnalysis",
    "FaceEngine",
    "ImageError",
    "ImageNotDecodable",
    "ImageTooLarge",
    "ImageTruncated",
    "ImageUnsupportedFormat",
    "ModelLoadError",
    "NoFace",
    "Template",
    "TemplateModelMismatch",
    "similarity",
]
