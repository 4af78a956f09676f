"""A scripted HTTP server on a real loopback port, for the device clients' transport tests.

Each path answers from a queue of canned responses (the last one repeats), and every request is
kept, so a test can see exactly what a client sent and how often.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from touchpoints.local_server import serving


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Answer only after this long (to make a client time out)."""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class StubService:
    def __init__(self) -> None:
        self.script: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.base_url = ""

    def on(self, path: str, *replies: Reply) -> None:
        self.script[path] = list(replies)

    def hits(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        self.seen.append(Seen(scope["method"], path, {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                              body))
        replies = self.script.get(path) or [Reply(404, {"status": 404, "code": "not_found", "detail": path})]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        payload = json.dumps(reply.body).encode() if reply.body is not None else b""
        kind = "application/problem+json" if reply.status >= 400 else "application/json"
        headers = [(b"content-type", kind.encode()), *((k.encode(), v.encode()) for k, v in reply.headers.items())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def problem(status: int, code: str, **extra: Any) -> dict[str, Any]:
    return {"type": f"urn:flighttoken:error:{code}", "status": status, "code": code, "title": code,
            "detail": f"{code} (stub)", **extra}


@asynccontextmanager
async def stub_service() -> AsyncIterator[StubService]:
    stub = StubService()
    async with serving(stub) as port:
        stub.base_url = f"http://127.0.0.1:{port}"
        yield stub
