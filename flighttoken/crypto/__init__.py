"""Envelope encryption for face templates at rest: templates sealed under per-flight (and
per-watchlist) data keys, data keys wrapped by master keys that never live in the database."""

from .keys import (
    DEK_SIZE,
    WRAPPED_SIZE,
    DataKeyCache,
    MasterKey,
    UnknownKekError,
    WrappedKey,
    generate_master_key,
    load_or_create_key_file,
    new_data_key,
)
from .sealing import OVERHEAD, DecryptionError, open_sealed, seal

__all__ = [
    "DEK_SIZE",
    "OVERHEAD",
    "WRAPPED_SIZE",
    "DataKeyCache",
    "DecryptionError",
    "MasterKey",
    "UnknownKekError",
    "WrappedKey",
    "generate_master_key",
    "load_or_create_key_file",
    "new_data_key",
    "open_sealed",
    "seal",
]
