"""Image bytes → BGR ``uint8`` array, or a refusal with a stable code.

Order matters for safety: byte limit, then magic-byte sniffing (so only the JPEG, PNG and JPEG 2000
parsers ever see client bytes), then the header (Pillow's lazy open: size, mode and bit depth, no
pixels) against two limits, and only then the decoder: OpenCV for complete JPEGs (the fast path for
camera frames), Pillow for everything else.

The two header limits: ``max_pixels`` on the canvas, and ``decode_max_pixels`` on the work of the
decode itself, the pixels decoded at full resolution weighted by bytes per sample. JPEG and JPEG 2000
decode big frames reduced (1/2 … 1/8), so only their reduced size counts; PNG cannot, so a 6000x6000
PNG (a few kB of zlib, 36 MP: ~0.7 s of CPU) is refused before a row of it is inflated, and a 16-bit
one counts twice. Pillow, not OpenCV, decodes PNG: it stops at the image's last row, while libpng
inflates IDAT data past it ("Too much image data": a 300 kB tail cost 1.4 s). Truncated images stay
refused (Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import msgspec
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from flighttoken.faces.errors import ImageNotDecodable, ImageTooLarge, ImageTruncated, ImageUnsupportedFormat

# Pillow format name → what we call it. JPEG 2000 covers both the JP2 box file and a raw J2K codestream
# (ICAO 9303 DG2 face images are often JPEG 2000).
SUPPORTED = {"JPEG": "jpeg", "PNG": "png", "JPEG2000": "jpeg2000"}

_MAGIC_SUPPORTED: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (b"\xff\x4f\xff\x51", "JPEG2000"),
)
# Recognised but refused: a clearer answer than "not an image" for what a client might plausibly send.
_MAGIC_UNSUPPORTED: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"), (b"8BPS", "PSD"), (b"qoif", "QOI"), (b"\x76\x2f\x31\x01", "EXR"),
)


_ORIENTATION = 0x0112  # EXIF tag


class ImageInfo(msgspec.Struct, frozen=True):
    format: str
    width: int
    height: int
    """Full-resolution size after EXIF rotation (before any reduced-scale decoding)."""
    scale: float
    """Original pixels per decoded pixel (1.0 unless a large JPEG/JPEG 2000 was decoded reduced)."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    decode_max_side: int
    decode_max_pixels: int | None = None
    """Most pixels decoded at full resolution, 16-bit samples counting twice; None: ``max_pixels``."""


def sniff(data: bytes) -> str:
    """Pillow format name from magic bytes; raises for unsupported or unknown content."""
    for magic, fmt in _MAGIC_SUPPORTED:
        if data.startswith(magic):
            return fmt
    for magic, fmt in _MAGIC_UNSUPPORTED:
        if data.startswith(magic):
            raise ImageUnsupportedFormat(f"{fmt} images are not accepted; send JPEG, PNG or JPEG 2000")
    if data[8:12] in (b"WEBP", b"ftyp") or data[4:8] == b"ftyp":
        raise ImageUnsupportedFormat("WebP/HEIF/AVIF images are not accepted; send JPEG, PNG or JPEG 2000")
    raise ImageNotDecodable("The upload is not a JPEG, PNG or JPEG 2000 image")


def decode_image(data: bytes, limits: ImageLimits) -> tuple[np.ndarray, ImageInfo]:
    """Decode ``data`` to a contiguous BGR ``uint8`` array with EXIF orientation applied."""
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"{len(data)} bytes is over the limit of {limits.max_bytes}",
                            limit_bytes=limits.max_bytes)
    if not data:
        raise ImageNotDecodable("The upload is empty")
    fmt = sniff(data)
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below is the one that counts; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])  # lazy: reads the header only
    except Image.DecompressionBombError:
        raise ImageTooLarge("The image header declares more pixels than allowed",
                            limit_pixels=limits.max_pixels) from None
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError, EOFError) as exc:
        raise _classify(exc, f"The {SUPPORTED[fmt]} header is damaged") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageNotDecodable("The image has no pixels")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(f"{width}x{height} pixels is over the limit of {limits.max_pixels}",
                            limit_pixels=limits.max_pixels)
    _check_decode_work(data, img, fmt, limits)
    if fmt == "JPEG" and data[-64:].rstrip(b"\0").endswith(b"\xff\xd9"):
        img.close()
        fast = _decode_jpeg_cv2(data, width, height, limits.decode_max_side)
        if fast is not None:
            return fast
        img = Image.open(io.BytesIO(data), formats=[fmt])
    scale = _reduce_on_decode(img, fmt, limits.decode_max_side)
    try:
        img.load()
        # exif_transpose copies even when there is nothing to do: only call it for a real rotation.
        if img.getexif().get(_ORIENTATION, 1) not in (0, 1):
            decoded_size = img.size
            img = ImageOps.exif_transpose(img) or img
            if img.size != decoded_size:  # rotated by 90°: report the size the viewer sees
                width, height = height, width
        if img.mode.startswith("I;16"):
            # 16-bit grey: keep the high byte. Pillow's convert("RGB") clips at 255 (a white frame).
            grey = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
            arr, conversion = grey, cv2.COLOR_GRAY2BGR
        else:
            rgb = img.convert("RGB") if img.mode != "RGB" else img
            arr, conversion = np.asarray(rgb), cv2.COLOR_RGB2BGR
    except (SyntaxError, ValueError, OSError, EOFError, MemoryError) as exc:
        raise _classify(exc, f"The {SUPPORTED[fmt]} data is corrupt") from None
    finally:
        img.close()
    bgr = cv2.cvtColor(arr, conversion)  # also makes it contiguous and writable
    return bgr, ImageInfo(format=SUPPORTED[fmt], width=width, height=height, scale=scale)


_CV2_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}


def _reduction(fmt: str, width: int, height: int, max_side: int) -> int:
    """How many times smaller each side is decoded: JPEG (DCT scaling) and JPEG 2000 (resolution
    levels) down to a long side >= ``max_side``, at most 1/8; PNG always at full size."""
    factor = 1
    if fmt in ("JPEG", "JPEG2000"):
        while factor < 8 and max(width, height) // (factor * 2) >= max_side:
            factor *= 2
    return factor


def _check_decode_work(data: bytes, img: Image.Image, fmt: str, limits: ImageLimits) -> None:
    """Refuse, from the header alone, a decode that would cost more than a camera frame's."""
    budget = limits.decode_max_pixels or limits.max_pixels
    width, height = img.size
    factor = _reduction(fmt, width, height, limits.decode_max_side)
    decoded = -(-width // factor) * -(-height // factor)
    # 16-bit samples: twice the bytes to inflate and unpack (PNG bit depth is IHDR's byte 24).
    wide = (fmt == "PNG" and data[12:16] == b"IHDR" and data[24] == 16) or img.mode.startswith("I;16")
    work = decoded * (2 if wide else 1)
    if work > budget:
        what = "16-bit " if wide else ""
        raise ImageTooLarge(f"a {width}x{height} {what}{SUPPORTED[fmt]} is more decoding than a camera frame "
                            f"(limit {budget} pixels decoded at full size, 16-bit counting twice)",
                            limit_pixels=budget)


def _decode_jpeg_cv2(data: bytes, width: int, height: int, max_side: int) -> tuple[np.ndarray, ImageInfo] | None:
    """Complete JPEGs (ending in the EOI marker) decode straight to BGR with OpenCV: 2x faster than
    Pillow plus its array copy and colour swap, which is most of the engine's own per-frame time.

    OpenCV applies the EXIF orientation and scales DCT like Pillow's draft(). Anything unusual
    (None from OpenCV) goes back to the Pillow path, which also names truncation precisely.
    """
    factor = _reduction("JPEG", width, height, max_side)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), _CV2_REDUCED[factor])
    if arr is None or arr.ndim != 3:
        return None
    h, w = arr.shape[:2]
    upright = abs(w * factor - width) <= factor and abs(h * factor - height) <= factor
    ow, oh = (width, height) if upright else (height, width)
    return arr, ImageInfo(format="jpeg", width=ow, height=oh, scale=ow / w)


def _reduce_on_decode(img: Image.Image, fmt: str, max_side: int) -> float:
    """Let JPEG (DCT scaling) and JPEG 2000 (resolution levels) decode big frames at 1/2, 1/4, 1/8.

    The detector sees at most ``detector_input_size`` pixels anyway, and a 24-MP camera frame costs
    ~150 ms to decode at full size versus ~20 ms at 1/4.
    """
    width, height = img.size
    long_side = max(width, height)
    if long_side <= max_side:
        return 1.0
    if fmt == "JPEG":
        # draft() picks the largest reduction that keeps the size >= the requested one.
        wanted = (max(1, width * max_side // long_side), max(1, height * max_side // long_side))
        img.draft("RGB", wanted)
        return width / img.size[0]
    if fmt == "JPEG2000":
        factor = _reduction(fmt, width, height, max_side)
        img.reduce = factor.bit_length() - 1  # type: ignore[attr-defined]  # resolution levels dropped
        return float(factor)
    return 1.0


def _classify(exc: BaseException, fallback: str) -> ImageNotDecodable | ImageTruncated:
    message = str(exc).lower()
    if isinstance(exc, EOFError) or "truncat" in message or "premature end" in message:
        return ImageTruncated("The image data ends early (incomplete upload?)")
    return ImageNotDecodable(fallback)
