"""Bytes → pixels: every refusal has its stable code, and valid images of each format decode upright."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from flighttoken.faces.decode import ImageLimits, decode_image
from flighttoken.faces.engine import FaceEngine
from flighttoken.faces.errors import (
    ImageError,
    ImageNotDecodable,
    ImageTooLarge,
    ImageTruncated,
    ImageUnsupportedFormat,
)
from flighttoken.settings import Settings

LIMITS = ImageLimits(max_bytes=1_000_000, max_pixels=4_000_000, decode_max_side=1000)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(lfw: Callable[[str, int], bytes]) -> Image.Image:
    return Image.open(io.BytesIO(lfw("Tony_Blair", 2))).convert("RGB")


@pytest.mark.parametrize(
    ("make", "error", "code", "status"),
    [
        (lambda p: b"this is not an image, just text", ImageNotDecodable, "image_not_decodable", 422),
        (lambda p: b"", ImageNotDecodable, "image_not_decodable", 422),
        (lambda p: b"\x89PNG\r\n\x1a\n" + b"\0" * 30, ImageNotDecodable, "image_not_decodable", 422),
        (lambda p: _encode(p, "JPEG")[: len(_encode(p, "JPEG")) // 2], ImageTruncated, "image_truncated", 422),
        (lambda p: _encode(p, "PNG")[:-4000], ImageTruncated, "image_truncated", 422),
        (lambda p: b"\xff\xd8\xff" + b"\0" * 1_000_000, ImageTooLarge, "image_too_large", 413),
        # Header says 20000x20000 (400 MP, past Pillow's own bomb guard) in a 100-byte file.
        (lambda p: _png_header_only(20000, 20000), ImageTooLarge, "image_too_large", 413),
        # 3000x3000 is under Pillow's guard but over our 4 MP limit: refused before decoding.
        (lambda p: _png_header_only(3000, 3000), ImageTooLarge, "image_too_large", 413),
        (lambda p: _encode(p, "GIF"), ImageUnsupportedFormat, "image_unsupported_format", 415),
        (lambda p: _encode(p, "BMP"), ImageUnsupportedFormat, "image_unsupported_format", 415),
        (lambda p: _encode(p, "TIFF"), ImageUnsupportedFormat, "image_unsupported_format", 415),
        (lambda p: _encode(p, "WEBP"), ImageUnsupportedFormat, "image_unsupported_format", 415),
    ],
    ids=["text", "empty", "png-broken-header", "jpeg-truncated", "png-truncated", "too-many-bytes",
         "bomb-20000x20000", "over-pixel-limit", "gif", "bmp", "tiff", "webp"],
)
def test_bad_input_has_a_stable_code(lfw: Callable[[str, int], bytes], make: Callable[[Image.Image], bytes],
                                     error: type[ImageError], code: str, status: int) -> None:
    with pytest.raises(error) as exc:
        decode_image(make(_photo(lfw)), LIMITS)
    assert exc.value.code == code
    assert exc.value.status == status
    assert isinstance(exc.value, ImageError)


async def test_engine_raises_image_errors_through_analyse(engine: FaceEngine) -> None:
    with pytest.raises(ImageNotDecodable):
        await engine.analyse(b"GET / HTTP/1.1")


def test_default_byte_limit_comes_from_settings(engine: FaceEngine, face_settings: Settings) -> None:
    oversized = b"\xff\xd8\xff" + bytes(face_settings.images.image_max_bytes)
    with pytest.raises(ImageTooLarge):
        engine.analyse_sync(oversized)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "JPEG2000"])
def test_supported_formats_decode_to_the_same_bgr_pixels(lfw: Callable[[str, int], bytes], fmt: str) -> None:
    src = _photo(lfw)
    data = _encode(src, fmt, **({"irreversible": False} if fmt == "JPEG2000" else {}))
    bgr, info = decode_image(data, LIMITS)
    assert bgr.shape == (250, 250, 3) and bgr.dtype == np.uint8
    assert (info.width, info.height, info.scale) == (250, 250, 1.0)
    rgb = np.asarray(src).astype(int)
    tolerance = 12 if fmt == "JPEG" else 0  # JPEG re-encoding is lossy; PNG and lossless JP2 are exact
    assert np.abs(bgr[..., ::-1].astype(int) - rgb).mean() <= tolerance


def test_raw_j2k_codestream_is_accepted(lfw: Callable[[str, int], bytes]) -> None:
    data = _encode(_photo(lfw), "JPEG2000", no_jp2=True)
    assert data[:4] == b"\xff\x4f\xff\x51"
    _, info = decode_image(data, LIMITS)
    assert info.format == "jpeg2000"


def test_exif_orientation_is_applied(lfw: Callable[[str, int], bytes]) -> None:
    upright = _photo(lfw).resize((200, 120))
    # Stored rotated, with EXIF saying "rotate 90° clockwise to display" (orientation 6).
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    bgr, info = decode_image(_encode(stored, "JPEG", exif=exif, quality=95), LIMITS)
    assert bgr.shape[:2] == (120, 200)
    assert (info.width, info.height) == (200, 120)
    assert np.abs(bgr[..., ::-1].astype(int) - np.asarray(upright).astype(int)).mean() < 12


def test_big_jpeg_is_decoded_at_reduced_scale(lfw: Callable[[str, int], bytes]) -> None:
    big = _photo(lfw).resize((2400, 1600))
    bgr, info = decode_image(_encode(big, "JPEG"), LIMITS)
    assert (info.width, info.height) == (2400, 1600)
    assert info.scale == pytest.approx(2.0)  # DCT scaling 1/2 keeps the long side >= decode_max_side (1000)
    assert bgr.shape[:2] == (800, 1200)


def test_jpeg_with_trailer_decodes_like_a_plain_one(lfw: Callable[[str, int], bytes]) -> None:
    # Complete JPEGs take OpenCV's fast path; bytes after the EOI marker (phone trailers) take
    # Pillow's. Both must give the same upright pixels and sizes.
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(_photo(lfw).resize((200, 120)).transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif)
    fast, fast_info = decode_image(data, LIMITS)
    slow, slow_info = decode_image(data + b"TRAILER" * 10, LIMITS)
    assert fast_info == slow_info and fast.shape == slow.shape == (120, 200, 3)
    assert np.abs(fast.astype(int) - slow.astype(int)).mean() < 3
