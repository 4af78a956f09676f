"""Envelope keys: per-flight (and per-watchlist) data keys (DEKs) wrapped by master keys (KEKs).

A DEK is wrapped with AES-256-GCM under the current KEK (same format as :mod:`.sealing`, 61 bytes).
The associated data binds the wrap to its KEK id and a context such as ``b"flight:<uuid>"``, so a
wrapped DEK copied to another flight's row fails to unwrap. AES key wrap (RFC 3394/5649) was not
used because it has no associated data: binding to a flight would need per-context KEK derivation.

Master keys come from a setting or a file, never from the database. A keyring string
``"kek-2026-11:BASE64,kek-2026-05:BASE64"`` lists several KEKs; the first is current. A bare
``BASE64`` entry gets an id derived from the key (``kek-<12 hex>``), stable across restarts.

Rotation with several instances running:
  1. append the new KEK *after* the current one and deploy everywhere (all can read it);
  2. move it first (now current) and deploy;
  3. rewrap every stored DEK for which :meth:`MasterKey.needs_rewrap` is true;
  4. drop the old KEK from the ring.
Templates are never touched: their DEKs don't change.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path

import msgspec

from .sealing import KEY_SIZE, DecryptionError, open_sealed, seal

DEK_SIZE = KEY_SIZE
WRAPPED_SIZE = 1 + 12 + DEK_SIZE + 16
_KEK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LENGTH_HINT = "a master key must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)"


class UnknownKekError(LookupError):
    """A wrapped DEK names a KEK that is not in the configured master keyring."""


class WrappedKey(msgspec.Struct, frozen=True):
    """A DEK encrypted under the KEK ``kek_id``; both are kept in the key store, never next to the
    ciphertext it opens (``flighttoken/db/keystore.py``)."""

    kek_id: str
    wrapped: bytes


def new_data_key() -> bytes:
    return secrets.token_bytes(DEK_SIZE)


def generate_master_key(kek_id: str | None = None) -> str:
    """A fresh keyring entry ``"<kek_id>:<urlsafe base64>"``, ready to put first in the keyring."""
    kek_id = kek_id or f"kek-{dt.datetime.now(dt.UTC):%Y-%m-%d}-{secrets.token_hex(2)}"
    if not _KEK_ID.fullmatch(kek_id):
        raise ValueError("key id must be 1-64 letters, digits, '.', '_' or '-'")
    return f"{kek_id}:{base64.urlsafe_b64encode(secrets.token_bytes(KEY_SIZE)).decode()}"


def _wrap_aad(kek_id: str, context: bytes) -> bytes:
    if not context:
        raise ValueError("context must not be empty: it binds the DEK to its flight or watchlist")
    # kek_id can't contain NUL, so this encoding is unambiguous.
    return b"flighttoken:dek:v1\x00" + kek_id.encode() + b"\x00" + context


def _decode_key(text: str, where: str) -> bytes:
    # Never include ``text`` (or anything derived from it) in an error: it may be the key.
    s = text.strip().replace("-", "+").replace("_", "/")
    if not s:
        raise ValueError(f"{where}: the key is empty")
    try:
        raw = base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: not valid base64; {_LENGTH_HINT}") from None
    if len(raw) != KEY_SIZE:
        raise ValueError(f"{where}: decodes to {len(raw)} bytes; {_LENGTH_HINT}")
    return raw


class MasterKey:
    """The KEK ring. Holds raw key material: never log it, ``repr`` shows ids only."""

    __slots__ = ("_current", "_keys")

    def __init__(self, keys: Mapping[str, bytes], current: str | None = None) -> None:
        if not keys:
            raise ValueError("the master keyring needs at least one key")
        for kek_id, kek in keys.items():
            if not _KEK_ID.fullmatch(kek_id):
                raise ValueError("key id must be 1-64 letters, digits, '.', '_' or '-'")
            if len(kek) != KEY_SIZE:
                raise ValueError(f"master key {kek_id!r} is {len(kek)} bytes, need {KEY_SIZE}")
        self._keys = dict(keys)
        self._current = next(iter(self._keys)) if current is None else current
        if self._current not in self._keys:
            raise ValueError(f"current key id {self._current!r} is not in the keyring")

    @classmethod
    def parse(cls, text: str, source: str = "master key") -> MasterKey:
        """Parse ``"id:BASE64,id:BASE64"`` or a bare ``BASE64``; the first entry is current."""
        keys: dict[str, bytes] = {}
        entries = text.split(",")
        for n, entry in enumerate(entries, 1):
            where = f"{source}, entry {n}" if len(entries) > 1 else source
            if not entry.strip():
                raise ValueError(f"{where}: empty (stray comma?)")
            kek_id, sep, b64 = entry.strip().rpartition(":")
            kek_id = kek_id.strip()
            if sep and not _KEK_ID.fullmatch(kek_id):
                raise ValueError(f"{where}: key id must be 1-64 letters, digits, '.', '_' or '-'")
            raw = _decode_key(b64, where)
            if not sep:
                digest = hashlib.sha256(b"flighttoken:kek-id\x00" + raw).hexdigest()
                kek_id = f"kek-{digest[:12]}"
            if kek_id in keys:
                raise ValueError(f"{where}: repeats the key id of an earlier entry")
            keys[kek_id] = raw
        return cls(keys)

    @classmethod
    def from_sources(cls, key: str | None, key_file: str | None) -> MasterKey:
        """Exactly one of ``key`` (keyring text) or ``key_file`` (a file holding it); "" = unset."""
        if key and key_file:
            raise ValueError("set either the master key or the master key file, not both")
        if key:
            return cls.parse(key)
        if key_file:
            try:
                text = Path(key_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ValueError(f"master key file {key_file}: cannot read ({reason})") from None
            return cls.parse(text, source=f"master key file {key_file}")
        raise ValueError("no master key configured: set the master key or the master key file")

    @property
    def current_id(self) -> str:
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"MasterKey(current_id={self._current!r}, key_ids={self.key_ids!r})"

    def wrap(self, dek: bytes, context: bytes) -> WrappedKey:
        if len(dek) != DEK_SIZE:
            raise ValueError(f"a data key must be {DEK_SIZE} bytes, got {len(dek)}")
        kek_id = self._current
        return WrappedKey(kek_id, seal(self._keys[kek_id], dek, _wrap_aad(kek_id, context)))

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        """The DEK; :class:`UnknownKekError` if its KEK is gone, :class:`DecryptionError` if it
        was wrapped for another context or tampered with."""
        kek = self._keys.get(wrapped.kek_id)
        if kek is None:
            raise UnknownKekError(
                f"data key is wrapped under KEK {wrapped.kek_id!r}, which is not in the master keyring "
                f"(known: {', '.join(self._keys)}); put it back in the keyring to read this data"
            )
        dek = open_sealed(kek, wrapped.wrapped, _wrap_aad(wrapped.kek_id, context))
        if len(dek) != DEK_SIZE:
            raise DecryptionError("unwrapped data key has the wrong length")
        return dek

    def needs_rewrap(self, wrapped: WrappedKey) -> bool:
        return wrapped.kek_id != self._current

    def rewrap(self, wrapped: WrappedKey, context: bytes) -> WrappedKey:
        """Re-encrypt the same DEK under the current KEK (fresh nonce); templates stay valid."""
        return self.wrap(self.unwrap(wrapped, context), context)

    def mac(self, purpose: bytes, data: bytes, kek_id: str | None = None) -> tuple[str, bytes]:
        """(KEK id, HMAC-SHA256 of ``data``) under a key derived from that KEK (default: current) for
        ``purpose``: a digest stored in the database that no one without the master key can test
        guesses against. :class:`UnknownKekError` if ``kek_id`` is not in the ring."""
        kek_id = kek_id or self._current
        kek = self._keys.get(kek_id)
        if kek is None:
            raise UnknownKekError(f"KEK {kek_id!r} is not in the master keyring")
        derived = hmac.digest(kek, b"flighttoken:mac\x00" + purpose, "sha256")
        return kek_id, hmac.digest(derived, data, "sha256")


def _validated(path: Path) -> str:
    text = path.read_text(encoding="utf-8").strip()
    MasterKey.parse(text, source=f"master key file {path}")  # fail here, naming the file
    return text


def load_or_create_key_file(path: str | os.PathLike[str]) -> str:
    """Development default: return the keyring text in ``path``, creating it (mode 0600) if absent.
    Development mode only: production mode refuses to start without a configured master key.

    Publishing with ``os.link`` never replaces an existing file, so two processes starting at once
    can't each write a key and lose the data wrapped under the loser's; and a crash mid-write
    leaves only a temporary file, never a half-written key.
    """
    target = Path(path)
    with contextlib.suppress(FileNotFoundError):
        return _validated(target)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    text = generate_master_key()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # independent of the umask
            os.write(fd, (text + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, target)
        except FileExistsError:
            return _validated(target)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return text


class DataKeyCache:
    """Unwrapped DEKs by context, so requests don't unwrap (or read the wrapped row) every time.

    Purge: delete the wrapped DEK in the key store, commit, then :meth:`forget`. A request that read
    the wrapped key just before the delete could re-cache the DEK; it can't store a template with it
    (the flight's key marker goes next) and it is evicted in time, but the key store copy is what
    crypto-shredding relies on.
    Evicts the oldest entry when full.
    """

    def __init__(self, master: MasterKey, max_entries: int = 4096) -> None:
        self._master = master
        self._max = max_entries
        self._keys: dict[bytes, bytes] = {}
        self._lock = threading.Lock()  # the service also unwraps from executor threads

    def get(self, context: bytes) -> bytes | None:
        return self._keys.get(context)

    def put(self, context: bytes, dek: bytes) -> None:
        with self._lock:
            self._keys.pop(context, None)
            while len(self._keys) >= self._max:
                del self._keys[next(iter(self._keys))]
            self._keys[context] = dek

    def unwrap(self, context: bytes, wrapped: WrappedKey) -> bytes:
        """Unwrap with the master key and remember the result."""
        dek = self._master.unwrap(wrapped, context)
        self.put(context, dek)
        return dek

    def forget(self, context: bytes) -> bool:
        """Drop the DEK from memory; True if it was cached."""
        with self._lock:
            return self._keys.pop(context, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()

    def __len__(self) -> int:
        return len(self._keys)
