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

from flighttoken.crypto import MasterKey, WrappedKey, generate_master_key
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
KEY = generate_master_key()  # the module's database: its key store's keys are wrapped under it


async def test_an_event_claimed_by_a_killed_instance_is_delivered_by_another(make_service) -> None:
    key = KEY
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


async def test_master_key_rotation_rewraps_webhook_secrets_and_they_still_sign(make_service) -> None:
    old_entry, new_entry = KEY, generate_master_key("kek-new")
    settings = make_service.settings(master_key=old_entry)
    async with make_service(settings):
        pass  # migrations applied
    pool = await create_pool(settings.database.database_url, settings)
    try:
        secret, wrapped = signing.new_secret(MasterKey.parse(old_entry), "RT")
        await q.upsert_webhook(pool, "RT", "https://dcs.example.com/rt", wrapped.kek_id, wrapped.wrapped)
        rewrapped, unreadable = await signing.rewrap_secrets(pool, MasterKey.parse(f"{new_entry},{old_entry}"))
        assert rewrapped == await pool.fetchval("SELECT count(*) FROM dcs_webhooks") and unreadable == 0
        row = await pool.fetchrow("SELECT secret_kek_id, secret_wrapped FROM dcs_webhooks WHERE airline = 'RT'")
        assert row["secret_kek_id"] == "kek-new"
        # The old master key can go: the same secret opens under the new one alone.
        only_new = MasterKey.parse(new_entry)
        assert signing.unwrap_secret(only_new, "RT", WrappedKey(row["secret_kek_id"], row["secret_wrapped"])) == secret
        assert await signing.rewrap_secrets(pool, only_new) == (0, 0)  # nothing left to do
    finally:
        await pool.close()
