"""Outbox delivery across an instance killed mid-delivery (issue 20): a deliverer in a subprocess
claims an event and posts it; the airline's receiver holds the request open; the process is
SIGKILLed. Another instance (the real service) delivers the same event once the dead one's lease
has lapsed: the event survives the crash, keeps its id, and is delivered."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from flighttoken.crypto import MasterKey, generate_master_key
from flighttoken.db.pool import create_pool
from flighttoken.db.queries import dcs as q
from flighttoken.dcs import outbox, signing
from flighttoken.vocabulary import DcsEvent
from tests.dcs.receiver import running_receiver
from tests.support.concurrency import within

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 4.0
DELIVERY_S = 30.0  # a loaded machine: the lease, a poll and a start-up


async def test_an_event_claimed_by_a_killed_instance_is_delivered_by_another(make_service) -> None:
    key = generate_master_key()
    settings = make_service.settings(master_key=key, dcs_lease_s=LEASE_S, dcs_timeout_s=2.0,
                                     dcs_delivery_interval_s=0.1)
    async with make_service(settings):
        pass  # migrations applied; no deliverer runs from here until the crash
    dsn = settings.database.database_url
    pool = await create_pool(dsn, settings)
    try:
        async with running_receiver(["hold"]) as receiver:
            secret, wrapped = signing.new_secret(MasterKey.parse(key), "CX")
            await q.upsert_webhook(pool, "CX", receiver.url, wrapped.kek_id, wrapped.wrapped)
            event_id = await outbox.enqueue(pool, airline="CX", kind=DcsEvent.TOKEN_REVOKED,
                                            payload={"token_id": "t-1", "reason": "offloaded"})
            assert event_id is not None

            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.dcs.kill_mid_delivery", dsn, key, str(LEASE_S), cwd=ROOT,
                stdout=asyncio.subprocess.PIPE)
            try:
                await asyncio.wait_for(receiver.held.wait(), DELIVERY_S)  # the request is in flight
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                assert await proc.wait() == -signal.SIGKILL
            row = await pool.fetchrow("SELECT status, attempts, claimed_until > now() AS leased FROM dcs_outbox"
                                      " WHERE id = $1", event_id)
            assert (row["status"], row["attempts"], row["leased"]) == ("pending", 1, True)  # its claim is orphaned
            receiver.release.set()  # the held request ends (its answer goes nowhere: the client is dead)

            async with make_service(settings):  # another instance
                await within(DELIVERY_S, lambda: str(event_id) in receiver.accepted())
                delivered = receiver.accepted()[str(event_id)]
                assert signing.verify(secret, delivered.body, delivered.headers[signing.SIGNATURE_HEADER.lower()])
                assert delivered.event["data"] == {"token_id": "t-1", "reason": "offloaded"}
                for _ in range(100):  # the mark follows the 200 by a round trip
                    row = await pool.fetchrow("SELECT status, attempts FROM dcs_outbox WHERE id = $1", event_id)
                    if row["status"] == "delivered":
                        break
                    await asyncio.sleep(0.05)
                assert (row["status"], row["attempts"]) == ("delivered", 2)
    finally:
        await pool.close()
