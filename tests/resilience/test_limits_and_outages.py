"""Limits and outages: rate limits per device, slow clients, and a database that goes away."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from flighttoken.db.embedded import EmbeddedPostgres
from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.testing import run_service

MISSING_FLIGHT = f"/v1/flights/{uuid.uuid4()}"


async def _admin_key(svc) -> str:
    async with svc.services.db().acquire() as conn:
        _, key = await add_device(conn, name=f"admin-{uuid.uuid4().hex[:6]}", kind=DeviceKind.ADMIN)
    return key


async def test_a_device_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected(make_service) -> None:
    async with make_service(rate_limit_per_second=3) as svc:
        noisy, quiet = await _admin_key(svc), await _admin_key(svc)
        # One concurrent burst, far over the rate: sent one by one, requests slower than 1/rate each
        # (a loaded machine) would never exceed the limit, and the test would measure the machine.
        async with svc.client(noisy) as client:
            statuses = await asyncio.gather(*(client.get(MISSING_FLIGHT) for _ in range(24)))
        limited = [r for r in statuses if r.status_code == 429]
        assert {r.status_code for r in statuses} == {404, 429}, [r.status_code for r in statuses]
        assert limited[0].json()["code"] == "rate_limited"
        assert limited[0].headers["content-type"].startswith("application/problem+json")
        assert int(limited[0].headers["retry-after"]) >= 1
        async with svc.client(quiet) as client:
            assert (await client.get(MISSING_FLIGHT)).status_code == 404


async def test_a_trickling_request_body_is_refused_with_408(make_service) -> None:
    async with make_service(request_body_timeout_s=0.5) as svc:
        key = await _admin_key(svc)
        host, port = svc.base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write((f"POST /v1/flights HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"air").encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
        assert b" 408 " in status_line


@pytest.mark.embedded
async def test_requests_get_503_while_the_database_is_down_and_the_service_recovers(
        base_settings, face_engine, tmp_path: Path) -> None:
    db = EmbeddedPostgres(tmp_path / "outage")
    dsn = db.start()
    settings = base_settings.replace(database_url=dsn, data_dir=str(tmp_path))
    try:
        async with run_service(settings, engine=face_engine) as svc:
            key = await _admin_key(svc)
            async with svc.client(key) as client:
                assert (await client.get(MISSING_FLIGHT)).status_code == 404
                await asyncio.to_thread(db.stop)
                svc.services.key_cache.clear()  # make the request need the database
                down = await client.get(MISSING_FLIGHT)
                assert down.status_code == 503
                assert down.json()["code"] == "database_unavailable"
                assert down.headers["retry-after"] == "2"
                ready = await client.get("/health/ready")
                assert ready.status_code == 503 and ready.json()["database"] == "down"

                await asyncio.to_thread(db.start)
                for _ in range(50):  # the pool reconnects on its own
                    if (await client.get(MISSING_FLIGHT)).status_code == 404:
                        break
                    await asyncio.sleep(0.1)
                assert (await client.get(MISSING_FLIGHT)).status_code == 404
                assert (await client.get("/health/ready")).status_code == 200
    finally:
        db.stop()
