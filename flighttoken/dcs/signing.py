"""Webhook secrets and signatures, Stripe's scheme.

The secret an airline receives is ``whsec_`` + 43 characters (32 random bytes, base64url). The
signature header is ``FlightToken-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is
HMAC-SHA256, keyed with the secret string exactly as shown (UTF-8), over ``"<t>." + body``. A
receiver checks the HMAC in constant time and refuses a ``t`` far from its clock (replay).

Stored, the secret is its 32 bytes wrapped under the master key with the airline as context;
``flighttoken keys rotate`` rewraps it (:func:`rewrap_secrets`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from flighttoken.crypto import DecryptionError, MasterKey, UnknownKekError, WrappedKey, new_data_key
from flighttoken.db.connection import Executor
from flighttoken.db.queries import dcs as q

PREFIX = "whsec_"
SIGNATURE_HEADER = "FlightToken-Signature"
EVENT_ID_HEADER = "FlightToken-Event-Id"
EVENT_TYPE_HEADER = "FlightToken-Event-Type"
DEFAULT_TOLERANCE_S = 300


def _context(airline: str) -> bytes:
    return b"dcs-webhook:" + airline.encode()


def new_secret(master: MasterKey, airline: str) -> tuple[str, WrappedKey]:
    """(the secret to show once, its wrapped form to store)."""
    raw = new_data_key()
    return _text(raw), master.wrap(raw, _context(airline))


def unwrap_secret(master: MasterKey, airline: str, wrapped: WrappedKey) -> str:
    return _text(master.unwrap(wrapped, _context(airline)))


async def rewrap_secrets(pool: Executor, master: MasterKey) -> tuple[int, int]:
    """Master key rotation: rewrap every webhook secret under the current KEK (the secrets stay the
    same, airlines change nothing). (rewrapped, unreadable)."""
    done = failed = 0
    for r in await q.secrets_to_rewrap(pool, master.current_id):
        old = WrappedKey(r["secret_kek_id"], bytes(r["secret_wrapped"]))
        try:
            new = master.rewrap(old, _context(r["airline"]))
        except (UnknownKekError, DecryptionError):
            failed += 1
            continue
        done += await q.replace_secret(pool, r["airline"], old.wrapped, new.kek_id, new.wrapped)
    return done, failed


def _text(raw: bytes) -> str:
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``FlightToken-Signature`` value for ``body`` sent at ``timestamp`` (default now)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance_s: int = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> bool:
    """What a receiver does: any ``v1`` matching, and ``t`` within ``tolerance_s`` of now."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit():
        return False
    t = int(stamps[0])
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).rsplit("v1=", 1)[1]
    return any(k.strip() == "v1" and hmac.compare_digest(v.strip(), expected) for k, v in parts)
