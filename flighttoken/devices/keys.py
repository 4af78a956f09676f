"""API keys: 256 random bits shown once, stored only as a SHA-256 digest.

A plain digest is enough (no slow KDF) because the keys are random, not human passwords.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "ftk_"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
