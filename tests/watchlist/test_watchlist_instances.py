"""Two instances on one database: a subject put on the watchlist through one is screened by the
other, and an alert raised on one reaches officers streaming from the other (sync events)."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack

import pytest

from tests.support import journey as j
from tests.support.concurrency import within
from tests.watchlist.helpers import AlertStream, extra_keys, pick_subject, subject_body


@pytest.fixture(scope="module")
async def pair(make_service):
    settings = make_service.settings()
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(make_service(settings, authority=True))
        b = await stack.enter_async_context(make_service(settings, authority=True))
        await asyncio.wait_for(b.services.sync.connected.wait(), 5)
        await asyncio.wait_for(a.services.sync.connected.wait(), 5)
        pool = a.services.db()
        keys = {**await j.make_devices(pool), **await extra_keys(pool)}
        yield a, b, keys


async def test_subjects_and_alerts_reach_the_other_instance(pair) -> None:
    a, b, keys = pair
    settings = a.services.settings
    s = pick_subject(a.services.engine, settings.faces_dir, settings.watchlist.watchlist_threshold,
                     settings.decisions.e_channel_threshold)
    async with a.authority_client(keys["authority"]) as authority:
        r = await authority.post("/v1/watchlist/subjects", json=subject_body([s.watchlist_photo]))
        assert r.status_code == 201, r.text
    subject_id = uuid.UUID(r.json()["id"])
    await within(5.0, lambda: subject_id in b.services.watchlist.gallery)

    # Screened on B, streamed on A; and the other way round.
    async with a.authority_client(keys["authority"]) as on_a, AlertStream(on_a) as stream_a, \
            b.authority_client(keys["authority"]) as on_b, AlertStream(on_b) as stream_b:
        async with b.client(keys["e_channel"]) as e_channel:
            assert (await j.identify(e_channel, s.probe_photo))["reason"] == "no_match"  # not a passenger
        first_a, first_b = await stream_a.next(), await stream_b.next()
        async with a.client(keys["e_channel"]) as e_channel:
            assert (await j.identify(e_channel, s.probe_photo))["reason"] == "no_match"  # not a passenger
        second_a, second_b = await stream_a.next(), await stream_b.next()
    assert first_a == first_b and second_a == second_b
    assert first_a["id"] < second_a["id"]
    assert stream_a.events.empty() and stream_b.events.empty(), "each alert is streamed once"

    async with a.authority_client(keys["authority"]) as authority:
        r = await authority.post(f"/v1/watchlist/subjects/{subject_id}/remove", json={"removed_by": "Insp. Wong"})
        assert r.status_code == 200
    await within(5.0, lambda: subject_id not in b.services.watchlist.gallery)


async def test_reconcile_repairs_a_missed_event(pair) -> None:
    a, b, keys = pair
    settings = a.services.settings
    s = pick_subject(a.services.engine, settings.faces_dir, settings.watchlist.watchlist_threshold,
                     settings.decisions.e_channel_threshold, skip=1)
    async with a.authority_client(keys["authority"]) as authority:
        r = await authority.post("/v1/watchlist/subjects", json=subject_body([s.watchlist_photo]))
    subject_id = uuid.UUID(r.json()["id"])
    await within(5.0, lambda: subject_id in b.services.watchlist.gallery)
    await b.services.watchlist.gallery.remove([subject_id])  # as if B had missed the event
    from flighttoken.watchlist.sync import reconcile

    assert await reconcile(b.services) == (1, 0)
    assert subject_id in b.services.watchlist.gallery
