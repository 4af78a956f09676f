"""Attack: keep listening to alerts with a key that was disabled or rotated (issue 17).

An open /v1/alerts/stream ends within 1 s once its key is disabled or rotated, whether the admin's
call lands on the instance holding the stream or on another one (the change reaches it as a sync
event); the old key then opens nothing. Before, the stream ran on to its 60 s limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.testing import RunningService
from tests.support import journey as j

ENDS_WITHIN_S = 1.0


@pytest.fixture(scope="module")
async def instances(make_service):
    settings = make_service.settings()
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(make_service(settings, authority=True))
        b = await stack.enter_async_context(make_service(settings, authority=True))
        keys = await j.make_devices(a.services.db())
        yield a, b, keys


async def _authority(svc: RunningService, name: str) -> tuple[str, str]:
    async with svc.services.db().acquire() as conn:
        device, key = await add_device(conn, name=name, kind=DeviceKind.AUTHORITY)
    return str(device.id), key


@contextlib.asynccontextmanager
async def open_stream(svc: RunningService, key: str) -> AsyncIterator[asyncio.Task[None]]:
    """An open alert stream; the task finishes when the service ends the stream."""
    async with svc.authority_client(key) as client, client.stream("GET", "/v1/alerts/stream") as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert (await anext(lines)).startswith(":")  # the opening comment: subscribed

        async def drain() -> None:
            async for _ in lines:
                pass

        task = asyncio.create_task(drain())
        try:
            yield task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task


async def _ended(stream: asyncio.Task[None]) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(stream), ENDS_WITHIN_S)
    except TimeoutError:
        return False
    return True


async def _refused(svc: RunningService, key: str) -> bool:
    async with svc.authority_client(key) as client:
        return (await client.get("/v1/alerts")).status_code == 404


async def test_a_stream_ends_within_a_second_of_its_key_being_disabled(instances) -> None:
    a, b, keys = instances
    device_id, key = await _authority(a, "console-disabled")
    async with open_stream(a, key) as here, open_stream(b, key) as elsewhere:
        async with a.client(keys["admin"]) as admin:
            r = await admin.post(f"/v1/devices/{device_id}/disable")
        assert r.status_code == 200, r.text
        assert await _ended(here), "the stream on the instance that disabled the key stayed open"
        assert await _ended(elsewhere), "the stream on the other instance stayed open"
    assert await _refused(a, key) and await _refused(b, key)


async def test_a_stream_ends_within_a_second_of_its_key_being_rotated(instances) -> None:
    a, b, keys = instances
    device_id, key = await _authority(a, "console-rotated")
    async with open_stream(a, key) as here, open_stream(b, key) as elsewhere:
        async with a.client(keys["admin"]) as admin:
            r = await admin.post(f"/v1/devices/{device_id}/rotate-key")
        assert r.status_code == 200, r.text
        assert await _ended(here), "the stream on the instance that rotated the key stayed open"
        assert await _ended(elsewhere), "the stream on the other instance stayed open"
    new_key = r.json()["api_key"]
    assert await _refused(a, key) and await _refused(b, key)
    async with open_stream(b, new_key) as renewed:
        assert not renewed.done()
