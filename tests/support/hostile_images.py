"""Decode bombs made on the fly (never stored in the repository): small files, huge decodes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def png16_bomb(side: int = 6000) -> bytes:
    """A ``side`` x ``side`` 16-bit greyscale PNG with a few stripes: ~70 kB of zlib for 36 MP
    (the red team's was 0.8 MB and took 675 ms to decode against 62 ms for a photo)."""
    pixels = np.zeros((side, side), np.uint16)
    pixels[::50] = 60000
    return png_bytes(Image.fromarray(pixels))


def palette_bomb(side: int = 6000) -> bytes:
    """A ``side`` x ``side`` palette PNG: a few kB that expand to 3 bytes a pixel in RGB."""
    return png_bytes(Image.new("P", (side, side)))


def big_png(width: int = 4000, height: int = 3000) -> bytes:
    """Large but within the limits: a 12 MP 8-bit PNG (the biggest touchpoint camera's frame)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[::40] = 200
    return png_bytes(Image.fromarray(pixels))
