"""Document keys: how a token and a consent name a travel document without the database holding its number.

A document key is ``HMAC-SHA256(k, "flighttoken:document-key:v1" NUL SHA-256(state|type|number))``.
Document numbers are few (a letter and eight digits is 2.6e9 candidates), so any unkeyed digest of
one is reversed by enumeration in seconds; a MAC under a secret that no dump of the service database
contains can't be. The inner SHA-256 is what releases before migration 0010 stored: rows written
then are converted by MACing their stored digest, without ever knowing the numbers.

Why one random key, kept wrapped in the key store (``document_mac_keys``), and not one derived from
the master keyring: a document key must stay the same for as long as any row carrying it lives
(look-ups, opt-out, the one-token-per-document rule), while master keys rotate and the old one is
then dropped from the ring; a key derived from the ring would change with it and every stored
document key would have to be recomputed, which needs the numbers. So a 256-bit key is generated
once per deployment, wrapped by the master key like a data key (``flighttoken keys rotate`` rewraps
it), shared by every instance through the key store and loaded at start-up. It is never purged with
a flight. The service database records only the key's id, so an instance started against another
deployment's key store (or a lost one) refuses to start instead of silently keying documents apart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Protocol

from .keys import MasterKey, WrappedKey

KEY_SIZE = 32
_DOMAIN = b"flighttoken:document-key:v1\x00"


class Document(Protocol):
    issuing_state: str
    type: str
    number: str


def document_mac_context(key_id: uuid.UUID) -> bytes:
    """The wrap context of the document MAC key in the key store."""
    return b"document-mac:" + str(key_id).encode()


def unkeyed_digest(issuing_state: str, doc_type: str, number: str) -> bytes:
    """SHA-256 of ``state|type|number``: what releases before 0010 stored. Only ever the MAC's input now."""
    return hashlib.sha256(f"{issuing_state}|{doc_type}|{number}".encode()).digest()


class DocumentKeys:
    """Computes document keys. Holds the MAC key: never log it; ``repr`` shows its id only."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key_id: uuid.UUID, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"the document MAC key must be {KEY_SIZE} bytes, got {len(key)}")
        self.key_id = key_id
        self._key = key

    @classmethod
    def generate(cls) -> DocumentKeys:
        return cls(uuid.uuid4(), secrets.token_bytes(KEY_SIZE))

    @classmethod
    def unwrap(cls, key_id: uuid.UUID, wrapped: WrappedKey, master: MasterKey) -> DocumentKeys:
        """From the key store's row; :class:`~.keys.UnknownKekError` or ``DecryptionError`` as for a data key."""
        return cls(key_id, master.unwrap(wrapped, document_mac_context(key_id)))

    def wrap(self, master: MasterKey) -> WrappedKey:
        return master.wrap(self._key, document_mac_context(self.key_id))

    def __repr__(self) -> str:
        return f"DocumentKeys(key_id={self.key_id!r})"

    def of(self, issuing_state: str, doc_type: str, number: str) -> bytes:
        return self.of_unkeyed(unkeyed_digest(issuing_state, doc_type, number))

    def of_document(self, doc: Document) -> bytes:
        return self.of(doc.issuing_state, doc.type, doc.number)

    def of_unkeyed(self, digest: bytes) -> bytes:
        """The document key of a row still holding the old unkeyed digest (migration 0010)."""
        return hmac.new(self._key, _DOMAIN + digest, hashlib.sha256).digest()
