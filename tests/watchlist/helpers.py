"""Shared by the watchlist tests: extra keys, an alert-stream reader, picking an LFW subject."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.testing import identities


async def extra_keys(pool) -> dict[str, str]:
    """An authority console and airline_ops keys of two airlines."""
    keys = {}
    async with pool.acquire() as conn:
        _, keys["authority"] = await add_device(conn, name="test-authority", kind=DeviceKind.AUTHORITY)
        _, keys["ops_cx"] = await add_device(conn, name="test-ops-cx", kind=DeviceKind.AIRLINE_OPS, airline="CX")
        _, keys["ops_ka"] = await add_device(conn, name="test-ops-ka", kind=DeviceKind.AIRLINE_OPS, airline="KA")
    return keys


def subject_body(photos: Sequence[Path | bytes], *, case: str = "HKPF/2026/0001", days: float = 30,
                 expires_at: datetime | None = None) -> dict[str, Any]:
    expires_at = expires_at or datetime.now(UTC) + timedelta(days=days)
    return {"case_reference": case, "reason_code": "arrest_warrant", "added_by": "Insp. Wong 4411",
            "expires_at": expires_at.isoformat(),
            "photos": [base64.b64encode(p if isinstance(p, bytes) else p.read_bytes()).decode() for p in photos]}


class AlertStream:
    """Reads /v1/alerts/stream in the background; ``next()`` returns each alert event's JSON."""

    def __init__(self, client: httpx.AsyncClient, last_event_id: str | None = None) -> None:
        self.client = client
        self.headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.ids: list[str] = []

    async def __aenter__(self) -> AlertStream:
        self._stack = contextlib.AsyncExitStack()
        response = await self._stack.enter_async_context(
            self.client.stream("GET", "/v1/alerts/stream", headers=self.headers))
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        self._task = asyncio.create_task(self._read(response))
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._stack.aclose()

    async def _read(self, response: httpx.Response) -> None:
        event: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line.startswith(":"):
                self.connected.set()  # the stream's opening comment: subscribed
                continue
            if line == "":
                if event.get("event") == "alert":
                    self.ids.append(event["id"])
                    await self.events.put(json.loads(event["data"]))
                event = {}
                continue
            field, _, value = line.partition(":")
            event[field] = value[1:] if value.startswith(" ") else value

    async def next(self, within: float = 10) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), within)


@dataclass
class Subject:
    name: str
    watchlist_photo: Path
    enrol_photo: Path
    probe_photo: Path
    other_photos: list[Path]


def pick_subject(engine, faces_dir: str, threshold: float, match_threshold: float, *,
                 skip: int = 0) -> Subject:
    """The first LFW identity (by name, after ``skip`` suitable ones) whose photos make a clear case:
    all usable captures, the probe clearly on the watchlist and clearly the enrolled passenger. The
    benchmark, not this test, measures how often that holds."""
    found = 0
    for name, photos in identities(faces_dir, min_photos=4, max_photos=10):
        analyses = [engine.analyse_sync(p.read_bytes()) for p in photos[:4]]
        if any(a.template is None or a.quality_failures or a.tailgating for a in analyses):
            continue
        v = [a.template.vector for a in analyses]
        if float(np.dot(v[2], v[0])) < threshold + 0.1 or float(np.dot(v[2], v[1])) < match_threshold + 0.15 \
                or float(np.dot(v[3], v[1])) < match_threshold + 0.15:
            continue
        if found == skip:
            return Subject(name, photos[0], photos[1], photos[2], photos[3:])
        found += 1
    raise AssertionError("no suitable LFW identity for the watchlist subject")
