"""Production log lines: one JSON object per line, with the request's and the device's context
(structlog owns logging; Litestar must not install its own configuration next to it)."""

from __future__ import annotations

import io
import json
import logging
from logging.handlers import QueueHandler

import pytest
import structlog

from flighttoken.logs import configure_logging
from tests.support import journey as j


@pytest.fixture
def log_stream():
    root = logging.getLogger()
    saved_handlers, saved_level, saved_config = root.handlers[:], root.level, structlog.get_config()
    configure_logging("json", "info")  # as `flighttoken serve` does
    stream = io.StringIO()
    [handler] = root.handlers  # pytest's capture handlers come later, per test phase
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield stream, handler
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_config)


async def test_every_line_is_one_json_object_with_request_and_device_context(make_service, log_stream) -> None:
    stream, ours = log_stream
    async with make_service(log_format="json") as svc:
        keys = await j.make_devices(svc.services.db())
        async with svc.client(keys["admin"]) as admin:
            r = await admin.get("/v1/flights", headers={"X-Request-ID": "req-log-1"})
            assert r.status_code == 200, r.text
        # Litestar did not put its own handler (a queue listener printing dicts) in place of ours.
        handlers = logging.getLogger().handlers
        assert ours in handlers and not any(isinstance(h, QueueHandler) for h in handlers), handlers

    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line parses on its own
    assert all(isinstance(r, dict) and "event" in r and "level" in r and "timestamp" in r for r in records)
    assert any(r["event"] == "service_ready" for r in records)  # start-up lines too, not only requests
    [access] = [r for r in records if r["event"] == "request" and r.get("request_id") == "req-log-1"]
    assert access["path"] == "/v1/flights" and access["method"] == "GET" and access["status"] == 200
    assert access["device_kind"] == "admin" and access["device_id"]
