"""A real airline DCS receiver for the tests: a Litestar app on a random loopback port that records
every delivery (headers and exact body) and answers as its plan says: ``ok`` (200), ``fail`` (500)
or ``hold`` (keeps the request open until the test releases it, as a hung DCS does)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import msgspec
from litestar import Litestar, Request, Response, post

from flighttoken.dcs import signing
from touchpoints.local_server import serving


@dataclass
class Delivery:
    event_id: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event(self) -> dict:
        return msgspec.json.decode(self.body)


@dataclass
class Receiver:
    url: str = ""
    plan: deque[str] = field(default_factory=deque)
    """What to answer the next requests with; empty: ``ok``."""
    deliveries: list[Delivery] = field(default_factory=list)
    held: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a request is being held open."""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    fail_first: bool = False
    """Fail each event's first delivery (after the plan is used up): every event is retried once.
    Per event, not per request: with several events in flight, a global fail/ok pattern can fail
    one event on every retry and dead-letter it."""
    _seen: set[str] = field(default_factory=set)

    def accepted(self) -> dict[str, Delivery]:
        """The events this DCS took (2xx), deduplicated by event id as an airline would."""
        return {d.event_id: d for d in self.deliveries if d.answered == 200}

    def of_type(self, kind: str) -> list[dict]:
        return [d.event for d in self.accepted().values() if d.event["type"] == kind]

    async def handle(self, request: Request) -> Response[bytes]:
        body = await request.body()
        event_id = request.headers.get(signing.EVENT_ID_HEADER, "")
        if self.plan:
            action = self.plan.popleft()
        elif self.fail_first and event_id not in self._seen:
            action = "fail"
        else:
            action = "ok"
        self._seen.add(event_id)
        if action == "hold":
            self.held.set()
            await self.release.wait()
        status = 200 if action == "ok" else 500
        self.deliveries.append(Delivery(event_id, dict(request.headers), body, status))
        return Response(b"", status_code=status)


@asynccontextmanager
async def running_receiver(plan: list[str] | None = None, *, fail_first: bool = False) -> AsyncIterator[Receiver]:
    receiver = Receiver(plan=deque(plan or []), fail_first=fail_first)

    @post("/hook", status_code=200)
    async def hook(request: Request) -> Response[bytes]:
        return await receiver.handle(request)

    async with serving(Litestar([hook])) as port:
        receiver.url = f"http://127.0.0.1:{port}/hook"
        try:
            yield receiver
        finally:
            receiver.release.set()  # a held request must end before the server can
