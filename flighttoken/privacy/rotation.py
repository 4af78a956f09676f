"""Master key rotation: rewrap every stored data key under the current master key (KEK).

The wrapped keys are in the key store (``flighttoken/db/keystore.py``); the service database and its
templates are never read or rewritten: data keys don't change, only their wrapping does. The document
MAC key (``flighttoken/crypto/document_key.py``) is rewrapped the same way, so document keys stored in
the service database keep matching after the old master key is gone; so are the airlines' DCS webhook
secrets (in the service database). Steps for
an operator (see flighttoken/crypto/keys.py): put the new KEK first in the keyring everywhere, run
``flighttoken keys rotate``, then remove the old KEK. Removing it is also what makes any copy of the
key store taken before a purge useless (its keys are still wrapped under the old KEK).

Each batch is read, rewrapped off the event loop and written back only where the row is unchanged
since it was read, so a purge or a second rotation running at the same time is never overwritten.
"""

from __future__ import annotations

import uuid

import msgspec

from flighttoken.crypto.document_key import document_mac_context
from flighttoken.crypto.keys import MasterKey, UnknownKekError, WrappedKey
from flighttoken.crypto.sealing import DecryptionError
from flighttoken.db.keystore import KeyStore
from flighttoken.db.queries import audit
from flighttoken.db.queries import keystore as q
from flighttoken.dcs.signing import rewrap_secrets
from flighttoken.executor import run_blocking
from flighttoken.privacy.vault import flight_context
from flighttoken.watchlist.vault import key_context as watchlist_key_context

BATCH = 500
# Wrapped key tables and the wrap context of each row.
CONTEXTS = {"flight_data_keys": flight_context, "watchlist_data_keys": watchlist_key_context,
            "document_mac_keys": document_mac_context}


class RotationReport(msgspec.Struct):
    current_kek: str
    rewrapped: int = 0
    already_current: int = 0
    unreadable: int = 0
    """Wrapped under a KEK missing from the ring, or failing authentication: left untouched."""
    unknown_keks: list[str] = msgspec.field(default_factory=list)


def _rewrap_batch(master: MasterKey, table: str, rows) -> tuple[list[tuple], list[str], int]:
    out, unknown, failed = [], [], 0
    for r in rows:
        old = WrappedKey(r["kek_id"], bytes(r["wrapped"]))
        try:
            new = master.rewrap(old, CONTEXTS[table](r["owner_id"]))
        except UnknownKekError:
            unknown.append(old.kek_id)
            continue
        except DecryptionError:
            failed += 1
            continue
        out.append((r["owner_id"], old.kek_id, old.wrapped, new.kek_id, new.wrapped))
    return out, unknown, failed


async def rotate(keystore: KeyStore, pool, master: MasterKey, *, actor: str = "cli") -> RotationReport:
    """Rewrap the key store's keys; the ``keys.rotate`` audit event goes to the service database ``pool``."""
    report = RotationReport(current_kek=master.current_id)
    unknown: set[str] = set()
    ks = keystore.pool
    for table in CONTEXTS:
        report.already_current += (await q.keys_by_kek(ks, table)).get(master.current_id, 0)
        after: uuid.UUID | None = None
        while rows := await q.keys_to_rewrap(ks, table, master.current_id, after, BATCH):
            after = rows[-1]["owner_id"]
            swapped, missing, failed = await run_blocking(_rewrap_batch, master, table, rows)
            unknown.update(missing)
            report.unreadable += len(missing) + failed
            report.rewrapped += await q.replace_wrapped(ks, table, swapped)
    # The airlines' webhook secrets live in the service database, wrapped the same way.
    rewrapped, unreadable = await rewrap_secrets(pool, master)
    report.rewrapped += rewrapped
    report.unreadable += unreadable
    report.unknown_keks = sorted(unknown)
    await audit.record(pool, actor=actor, action="keys.rotate", outcome="ok" if not report.unreadable else "error",
                       detail=msgspec.to_builtins(report))
    return report
