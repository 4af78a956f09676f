"""Run one flight's purge in this process and SIGKILL the process at a chosen step: a real crash half
way, with connections dropped mid-transaction, not a simulated exception.

    python -m tests.privacy.kill_mid_purge DSN MASTER_KEY FLIGHT_ID STEP

STEP names the function of ``flighttoken.db.queries.privacy`` (or ``keystore.NAME`` of
``flighttoken.db.queries.keystore``, ``tokens.NAME`` of ``flighttoken.db.queries.tokens``) at whose
call the process dies.
Everything committed before it stays; an open transaction is lost with the connection.
Exit status: killed (-9) as intended, or 3 if the purge finished without reaching STEP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid

from flighttoken.db.keystore import KeyStore
from flighttoken.db.pool import create_pool
from flighttoken.db.queries import keystore as keystore_q
from flighttoken.db.queries import privacy as q
from flighttoken.db.queries import tokens as tokens_q
from flighttoken.privacy.purge import purge_flight
from flighttoken.privacy.vault import TemplateVault, load_master_key
from flighttoken.services import Services
from flighttoken.settings import load_settings


async def main(dsn: str, master_key: str, flight_id: uuid.UUID, step: str) -> int:
    settings = load_settings({}, database_url=dsn, master_key=master_key)
    services = Services(settings=settings, dsn=dsn, pool=await create_pool(dsn, settings))
    services.vault = TemplateVault(load_master_key(settings), await KeyStore.open(dsn, settings))
    module, _, name = step.rpartition(".")
    queries = {"keystore": keystore_q, "tokens": tokens_q}.get(module, q)
    real = getattr(queries, name)

    async def die(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    assert callable(real)
    setattr(queries, name, die)
    await purge_flight(services, flight_id, "departed")
    return 3


if __name__ == "__main__":
    dsn_, key_, flight_, step_ = sys.argv[1:5]
    sys.exit(asyncio.run(main(dsn_, key_, uuid.UUID(flight_), step_)))
