"""The simulated airlines' departure control system: an HTTP receiver the simulator runs and
registers as every airline's webhook. It fails a share of deliveries (5xx) at random, checks each
signature against the README's contract, and records every delivery for the report
(:func:`touchpoints.simulator.dcs_report.build`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from touchpoints.clients import AdminClient
from touchpoints.local_server import serving
from touchpoints.transport import ApiError, TouchpointError

TOLERANCE_S = 300


def signature_valid(secret: str, body: bytes, header: str, now: float | None = None) -> bool:
    """``FlightToken-Signature: t=<unix>,v1=<hex>``: HMAC-SHA256 keyed with the secret over
    ``<t>.<body>``, ``t`` within 5 minutes (README, "For airlines: DCS webhooks")."""
    fields = [p.split("=", 1) for p in header.split(",") if "=" in p]
    t = [v for k, v in fields if k.strip() == "t"]
    if len(t) != 1 or not t[0].isdigit() or abs((now or time.time()) - int(t[0])) > TOLERANCE_S:
        return False
    expected = hmac.new(secret.encode(), t[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(k.strip() == "v1" and hmac.compare_digest(v.strip(), expected) for k, v in fields)


@dataclass(slots=True)
class Delivery:
    airline: str
    event_id: str
    status: int
    signature_ok: bool
    event: dict[str, Any]


@dataclass
class Receiver:
    failure_share: float = 0.2
    seed: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    url: str = ""
    registered: dict[str, str] = field(default_factory=dict)
    """airline → ``registered`` or the error that kept its webhook from being set."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        airline = scope["path"].rstrip("/").rsplit("/", 1)[-1]
        secret = self.secrets.get(airline)
        ok = secret is not None and signature_valid(secret, body, headers.get("flighttoken-signature", ""))
        status = 503 if self._rng.random() < self.failure_share else 200
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        self.deliveries.append(Delivery(airline, headers.get("flighttoken-event-id", ""), status, ok, event))
        self.arrived.set()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    def accepted(self) -> dict[str, Delivery]:
        """Deliveries answered 2xx, deduplicated by event id as an airline does."""
        return {d.event_id: d for d in self.deliveries if d.status == 200}


@contextlib.asynccontextmanager
async def running(receiver: Receiver, host: str = "127.0.0.1") -> AsyncIterator[Receiver]:
    async with serving(receiver, host) as port:
        receiver.url = f"http://{host}:{port}/dcs/"
        yield receiver

async def register(receiver: Receiver, admin: AdminClient, airlines: set[str]) -> None:
    """Point every airline's webhook at the receiver; a new secret each (shown once, kept here)."""
    for airline in sorted(airlines):
        try:
            response = await admin.transport.request(
                "PUT", f"/v1/airlines/{airline}/webhook",
                json={"url": receiver.url + airline, "rotate_secret": True})
            receiver.secrets[airline] = response.json()["secret"]
            receiver.registered[airline] = "registered"
        except (ApiError, TouchpointError, KeyError, ValueError) as exc:
            receiver.registered[airline] = f"failed: {exc}"[:200]


async def unregister(receiver: Receiver, admin: AdminClient) -> None:
    for airline, state in receiver.registered.items():
        if state == "registered":
            with contextlib.suppress(ApiError, TouchpointError):
                await admin.transport.request("DELETE", f"/v1/airlines/{airline}/webhook")


async def drain(receiver: Receiver, expected: set[tuple[str, str]], timeout_s: float) -> float:
    """Wait until every expected (type, subject) event was accepted, or ``timeout_s``; returns the
    seconds waited. A subject is a token id (passenger events) or a flight id (boarding.closed)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if expected <= seen(receiver):
            break
        receiver.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.arrived.wait(), 1.0)
    return round(time.monotonic() - started, 1)


def subject(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    return str(data.get("token_id") or data.get("flight_id") or "")


def seen(receiver: Receiver) -> set[tuple[str, str]]:
    return {(d.event.get("type", ""), subject(d.event)) for d in receiver.accepted().values()}
