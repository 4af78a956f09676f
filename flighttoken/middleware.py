"""HTTP middleware: request context for logs (request id, one access line) and slow-client limits."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import re
import time
import uuid
from collections.abc import Callable

import structlog
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from flighttoken.errors import ServiceError

log = structlog.get_logger("flighttoken.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# The HTTP request the current code serves, unique in this process whatever X-Request-Id a client
# sends (the face engine's admission groups one request's captures by it).
current_request: contextvars.ContextVar[int] = contextvars.ContextVar("current_request", default=0)
_serials = itertools.count(1)


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        current_request.set(next(_serials))
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, method=scope["method"],
                                               path=scope["path"])
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            if not scope["path"].startswith("/health"):
                log.info("request", status=status, ms=round((time.perf_counter() - started) * 1000, 2))
            structlog.contextvars.clear_contextvars()

    return middleware


def slow_client_middleware(timeout_s: float) -> Callable[[ASGIApp], ASGIApp]:
    """Refuse a request whose body does not arrive within ``timeout_s`` (a trickling client would
    otherwise hold a worker and a connection for as long as it likes). Only the body is timed:
    after it is complete, ``receive`` passes through untouched (streams wait for disconnects)."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            body_done = False

            async def timed_receive() -> ReceiveMessage:
                nonlocal body_done
                if body_done:
                    return await receive()
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise ServiceError("the request body did not arrive in time", code="request_timeout",
                                       status=408) from None
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_done = True
                return message

            await app(scope, timed_receive, send)

        return middleware

    return wrap
