"""Errors of the face engine.

Input errors are :class:`~flighttoken.errors.ServiceError` subclasses with stable codes, so the
HTTP layer maps them to problem+json without knowing about faces. Model errors are plain
exceptions: they are operator mistakes found at start-up, never a client's fault.
"""

from __future__ import annotations

from flighttoken.errors import ServiceError, Unprocessable


class ImageError(Unprocessable):
    """The uploaded bytes cannot be used as a photo. ``code`` says why."""

    status, code, title = 422, "image_not_decodable", "The image cannot be decoded"


class ImageNotDecodable(ImageError):
    status, code, title = 422, "image_not_decodable", "The image cannot be decoded"


class ImageTruncated(ImageError):
    status, code, title = 422, "image_truncated", "The image is truncated"


class ImageTooLarge(ImageError):
    status, code, title = 413, "image_too_large", "The image is too large"


class ImageUnsupportedFormat(ImageError):
    status, code, title = 415, "image_unsupported_format", "The image format is not supported"


class ModelLoadError(Exception):
    """A model file is missing or unusable; the message names the file and the setting to fix."""


__all__ = [
    "ImageError",
    "ImageNotDecodable",
    "ImageTooLarge",
    "ImageTruncated",
    "ImageUnsupportedFormat",
    "ModelLoadError",
    "ServiceError",
]
