"""Service errors and the single mapping from exceptions to ``application/problem+json``.

Every error a client can see has a stable ``code`` (snake_case, never renamed once published),
an HTTP status and a human ``detail``. Handlers raise :class:`ServiceError`; nothing else builds
error responses.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import asyncpg
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.exceptions import ValidationException as LitestarValidationException

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger(__name__)


class ServiceError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str = "", *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code  # type: ignore[misc]
        if status is not None:
            self.status = status  # type: ignore[misc]
        self.headers = headers or {}
        self.extra = extra


class InvalidRequest(ServiceError):
    status, code, title = 400, "invalid_request", "The request is malformed"


class Unauthenticated(ServiceError):
    status, code, title = 401, "unauthenticated", "A valid API key is required"


class Forbidden(ServiceError):
    status, code, title = 403, "forbidden", "This key may not do that"


class NotFound(ServiceError):
    status, code, title = 404, "not_found", "No such resource"


class Conflict(ServiceError):
    status, code, title = 409, "conflict", "The request conflicts with the current state"


class Unprocessable(ServiceError):
    status, code, title = 422, "unprocessable", "The request cannot be processed"


class Unavailable(ServiceError):
    status, code, title = 503, "unavailable", "The service is temporarily unavailable"


def problem_body(status: int, code: str, title: str, detail: str, request: Request,
                 **extra: Any) -> dict[str, Any]:
    body = {"type": f"urn:flighttoken:error:{code}", "title": title, "status": status,
            "code": code, "detail": detail, "instance": request.url.path, **extra}
    # Unknown paths never reach the request-context middleware: give them an id here, so every
    # problem looks alike whether or not a route matched.
    body["request_id"] = request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex
    return body


def problem(status: int, code: str, title: str, detail: str, request: Request,
            headers: dict[str, str] | None = None, **extra: Any) -> Response[dict[str, Any]]:
    body = problem_body(status, code, title, detail, request, **extra)
    headers = {**(headers or {}), "x-request-id": body["request_id"]}
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def service_error_body(exc: ServiceError, request: Request) -> dict[str, Any]:
    """The problem body ``exc`` is answered with (what an idempotent replay sends again)."""
    return problem_body(exc.status, exc.code, exc.title, exc.detail, request, **exc.extra)


def _from_http_exception(request: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    if isinstance(exc, LitestarValidationException):
        # Litestar's own body/parameter validation: surface which field is wrong, not our internals.
        errors = exc.extra if isinstance(exc.extra, list) else []
        return problem(400, "invalid_request", "The request is malformed", exc.detail, request,
                       errors=errors)
    if isinstance(exc, NotAuthorizedException):
        return problem(401, "unauthenticated", "A valid API key is required", exc.detail, request)
    if isinstance(exc, PermissionDeniedException):
        return problem(403, "forbidden", "This key may not do that", exc.detail, request)
    codes = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
             415: "unsupported_media_type", 429: "rate_limited", 503: "unavailable"}
    code = codes.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 429:
        # Litestar's limiter sends the IETF RateLimit-* headers; clients also expect Retry-After.
        headers.setdefault("Retry-After", str(max(1, int(headers.get("RateLimit-Reset", "1") or 1))))
    return problem(exc.status_code, code, exc.detail, exc.detail, request, headers=headers)


# The database is down, restarting or unreachable: the request did nothing and may be retried.
# (Statement-level failures such as constraint violations are not in this list: they are bugs.)
DATABASE_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
    # A connection the server dropped mid-statement (fast shutdown) can leave asyncpg's protocol in a
    # state it reports as an internal error; the transaction did not complete either way.
    asyncpg.InternalClientError,
    OSError,  # refused TCP connection, or a missing Unix socket while the server restarts
    TimeoutError,
)
DATABASE_RETRY_AFTER_S = "2"
TOO_DEEP = "the JSON body is nested too deeply"


def _body_too_deep(exc: Exception) -> bool:
    """msgspec (Litestar's body decoding) gives up on deep nesting, e.g. a 100k-deep ``[[[[...]]]]``,
    with a RecursionError naming the decoding; any other RecursionError is a bug and stays a 500."""
    return isinstance(exc, RecursionError) and any(w in str(exc) for w in ("while deserializing", "while decoding"))


def exception_to_problem(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    """The one exception → HTTP mapping, registered for every exception type."""
    if isinstance(exc, DATABASE_UNAVAILABLE):
        log.warning("database_unavailable", error=type(exc).__name__)
        return problem(503, "database_unavailable", "The service is temporarily unavailable",
                       "the database cannot be reached; retry shortly", request,
                       headers={"Retry-After": DATABASE_RETRY_AFTER_S})
    if isinstance(exc, asyncpg.DataError):
        # Defence in depth behind schema validation: a value PostgreSQL cannot hold (out of range,
        # unrepresentable text). The transaction rolled back, so nothing changed.
        return problem(400, "invalid_request", "The request is malformed",
                       "a value is out of range or cannot be stored", request)
    if _body_too_deep(exc):
        # Raised while the body was parsed, before the handler ran: nothing changed.
        return problem(400, "invalid_request", "The request is malformed", TOO_DEEP, request)
    if isinstance(exc, ServiceError):
        return problem(exc.status, exc.code, exc.title, exc.detail, request, headers=exc.headers,
                       **exc.extra)
    if isinstance(exc, HTTPException):
        return _from_http_exception(request, exc)
    log.exception("unhandled_error", error=type(exc).__name__)
    return problem(500, "internal_error", "Internal error", "An unexpected error occurred", request)
