"""Request context for logs: a request id (client's ``X-Request-ID`` or a new one), one access line."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("flighttoken.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, method=scope["method"],
                                               path=scope["path"])
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            if not scope["path"].startswith("/health"):
                log.info("request", status=status, ms=round((time.perf_counter() - started) * 1000, 2))
            structlog.contextvars.clear_contextvars()

    return middleware
