"""AES-256-GCM sealing of small blobs: face templates under a data key, data keys under a master key.

Format, version 1 (29 bytes of overhead; a 2048-byte template seals to 2077 bytes)::

    version (1 byte, 0x01) | nonce (12 random bytes) | ciphertext | GCM tag (16 bytes)

The version byte is also part of GCM's associated data, so the header can't be changed either.
Random 96-bit nonces are safe for up to ~2**32 seals per key; a data key seals one flight's templates.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 1
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
_HEADER = bytes([FORMAT_VERSION])


class DecryptionError(Exception):
    """A blob can't be opened: wrong key, wrong associated data, tampered or truncated data."""


def _check(key: bytes, aad: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes, got {len(key)}")
    if not aad:
        # Empty AAD would let a ciphertext be copied to any other row under the same key.
        raise ValueError("aad must not be empty: it binds the ciphertext to its row")


def seal(dek: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext``; ``aad`` must be given again, unchanged, to open it."""
    _check(dek, aad)
    nonce = os.urandom(NONCE_SIZE)
    return _HEADER + nonce + AESGCM(dek).encrypt(nonce, plaintext, _HEADER + aad)


def open_sealed(dek: bytes, blob: bytes | memoryview, aad: bytes) -> bytes:
    """Inverse of :func:`seal`; raises :class:`DecryptionError` on any mismatch or tampering."""
    _check(dek, aad)
    blob = bytes(blob)  # asyncpg may hand over a memoryview
    if len(blob) < OVERHEAD:
        raise DecryptionError("sealed blob is truncated")
    if blob[0] != FORMAT_VERSION:
        raise DecryptionError(f"unsupported sealed format version {blob[0]}")
    nonce, body = blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :]
    try:
        return AESGCM(dek).decrypt(nonce, body, _HEADER + aad)
    except InvalidTag:
        # One message for every cause: wrong key, wrong aad and tampering are indistinguishable anyway.
        raise DecryptionError("authentication failed: wrong key, wrong context or tampered data") from None
