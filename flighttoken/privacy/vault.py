"""Templates at rest: sealed with the flight's data key, which is wrapped by the master key and kept
in the key store (``flighttoken/db/keystore.py``), a database apart from the templates.

The vault is the only code that sees plaintext templates on their way to or from PostgreSQL.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import structlog

from flighttoken.crypto.keys import DataKeyCache, MasterKey, load_or_create_key_file, new_data_key
from flighttoken.crypto.sealing import open_sealed, seal
from flighttoken.db.connection import Connection
from flighttoken.db.keystore import KeyStore
from flighttoken.db.queries import privacy as privacy_q
from flighttoken.production import master_key_problem
from flighttoken.settings import Settings

log = structlog.get_logger(__name__)
TEMPLATE_DTYPE = np.dtype("<f4")


class MasterKeyError(Exception):
    """No usable master key; the message names the setting."""


def load_master_key(settings: Settings) -> MasterKey:
    problem = master_key_problem(settings)
    if problem and settings.production:
        raise MasterKeyError(problem)
    try:
        if problem:
            path = Path(settings.database.data_dir) / "master.key"
            log.warning("development_master_key", path=str(path),
                        hint="set FLIGHTTOKEN_MASTER_KEY_FILE in production")
            return MasterKey.parse(load_or_create_key_file(path), source=f"master key file {path}")
        return MasterKey.from_sources(settings.privacy.master_key or None, settings.privacy.master_key_file or None)
    except (ValueError, OSError) as exc:
        raise MasterKeyError(f"FLIGHTTOKEN_MASTER_KEY / FLIGHTTOKEN_MASTER_KEY_FILE: {exc}") from None


def flight_context(flight_id: uuid.UUID) -> bytes:
    return b"flight:" + str(flight_id).encode()


def template_aad(token_id: uuid.UUID, model_id: str) -> bytes:
    return b"token:" + str(token_id).encode() + b":model:" + model_id.encode()


class TemplateVault:
    def __init__(self, master: MasterKey, keystore: KeyStore) -> None:
        self.master = master
        self.keystore = keystore
        self.keys = DataKeyCache(master)

    async def create_flight_key(self, conn: Connection, flight_id: uuid.UUID) -> None:
        """A new data key for the flight: committed in the key store at once, then its marker is written
        with ``conn`` (in the caller's transaction, next to the flight row)."""
        wrapped = self.master.wrap(new_data_key(), flight_context(flight_id))
        key_id = await self.keystore.add_flight_key(flight_id, uuid.uuid4(), wrapped)
        await privacy_q.insert_flight_key_marker(conn, flight_id, key_id)

    async def flight_key(self, flight_id: uuid.UUID) -> bytes | None:
        """The flight's data key (from the key store), or None once it has been destroyed (purged)."""
        context = flight_context(flight_id)
        cached = self.keys.get(context)
        if cached is not None:
            return cached
        wrapped = await self.keystore.flight_key(flight_id)
        if wrapped is None:
            return None
        return self.keys.unwrap(context, wrapped)

    def forget_flight(self, flight_id: uuid.UUID) -> None:
        self.keys.forget(flight_context(flight_id))

    @staticmethod
    def seal_template(dek: bytes, token_id: uuid.UUID, model_id: str, vector: np.ndarray) -> bytes:
        return seal(dek, np.asarray(vector, dtype=TEMPLATE_DTYPE).tobytes(), template_aad(token_id, model_id))

    @staticmethod
    def open_template(dek: bytes, token_id: uuid.UUID, model_id: str, blob: bytes) -> np.ndarray:
        return np.frombuffer(open_sealed(dek, blob, template_aad(token_id, model_id)), dtype=TEMPLATE_DTYPE)
