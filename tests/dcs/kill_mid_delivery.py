"""Run the DCS deliverer alone in this process, to be SIGKILLed by the test mid-delivery: a real
crash with a claimed event and an HTTP request in flight, not a simulated exception.

    python -m tests.dcs.kill_mid_delivery DSN MASTER_KEY LEASE_S

It delivers until killed; exit status 3 if it ever stops on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from flighttoken.crypto import MasterKey
from flighttoken.db.pool import create_pool
from flighttoken.dcs.deliverer import start_deliverer
from flighttoken.settings import load_settings


async def main(dsn: str, master_key: str, lease_s: float) -> int:
    settings = load_settings({}, database_url=dsn, master_key=master_key, mode="development",
                             dcs_lease_s=lease_s, dcs_timeout_s=lease_s * 0.9, dcs_delivery_interval_s=0.05)
    pool = await create_pool(dsn, settings)
    async with contextlib.AsyncExitStack() as stack:
        await start_deliverer(pool, MasterKey.parse(master_key), settings.dcs, stack)
        print("deliverer started", flush=True)
        await asyncio.sleep(3600)
    return 3


if __name__ == "__main__":
    dsn_, key_, lease_ = sys.argv[1:4]
    sys.exit(asyncio.run(main(dsn_, key_, float(lease_))))
