"""Enrolment against purge (issue 16): an enrolment adds its face to the galleries after its commit;
a purge landing in between must not leave that face searchable until the next reconcile.

The interleaving is forced, not hoped for: the test's hook on the gallery registry stops the
enrolment right after its commit, the flight is cancelled (and so purged) over HTTP meanwhile, and
only then does the enrolment's gallery add go ahead.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import numpy as np
import pytest

from flighttoken.testing import lfw_root
from tests.support import journey as j


@pytest.fixture(scope="module")
async def svc(make_service):
    async with make_service(purge_sweep_interval_s=3600) as running:
        yield running


def _usable(engine, photo) -> bool:
    a = engine.analyse_sync(photo.read_bytes())
    return a.template is not None and not a.quality_failures


async def test_purge_between_enrolment_commit_and_gallery_add_leaves_no_face(svc, face_engine, monkeypatch) -> None:
    services = svc.services
    keys = await j.make_devices(services.db())
    async with svc.client(keys["admin"]) as admin:
        flight = await j.create_flight(admin, "901", "23")
    flight_id = uuid.UUID(flight["id"])
    photo = next(p for p in sorted((lfw_root(services.settings.faces_dir) / "Venus_Williams").glob("*.jpg"))
                 if _usable(face_engine, p))

    registry = services.galleries
    original_add = registry.add
    committed, purged = asyncio.Event(), asyncio.Event()
    added: list[np.ndarray] = []

    async def add_after_purge(token_id, flight, window, vector, *args, **kwargs):
        # The enrolment has committed (it adds only after that); hold it here until the purge is done.
        added.append(vector)
        committed.set()
        await purged.wait()
        return await original_add(token_id, flight, window, vector, *args, **kwargs)

    monkeypatch.setattr(registry, "add", add_after_purge)
    async with svc.client(keys["kiosk"]) as kiosk, svc.client(keys["admin"]) as admin:
        enrolling = asyncio.create_task(kiosk.post("/v1/enrolments", json=j.enrolment(
            photo, flight["id"], document_number="K9000001")))
        await asyncio.wait_for(committed.wait(), 60)
        async with services.db().acquire() as conn:
            stored = await conn.fetchval("SELECT count(*) FROM templates WHERE flight_id = $1", flight_id)
        assert stored == 1, "the hook runs after the enrolment's commit"
        cancel = await admin.post(f"/v1/flights/{flight['id']}/state", json={"state": "cancelled"})
        assert cancel.status_code == 200, cancel.text
        async with services.db().acquire() as conn:
            receipt = await conn.fetchrow("SELECT completed_at, templates_deleted FROM purge_receipts"
                                          " WHERE flight_id = $1", flight_id)
        assert receipt is not None and receipt["completed_at"] is not None and receipt["templates_deleted"] == 1
        purged.set()
        r = await asyncio.wait_for(enrolling, 60)
    assert r.status_code == 201, r.text
    token_id = uuid.UUID(r.json()["token_id"])

    # The enrolment's late add found the flight purged: its face is nowhere in this instance's galleries.
    assert not registry.contains(token_id)
    assert registry.flight_size(flight_id) == 0
    window = datetime.fromisoformat(flight["window_start"])
    assert registry.window_size(window) == 0
    found = await registry.search_windows([window], added[0], k=5)
    assert [c.id for c in found if c.id == str(token_id)] == []
