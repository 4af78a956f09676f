"""The HTTP transport every device client shares: API key, timeouts, bounded retries, typed errors.

Retried, because the service did nothing with the request:
  * 429 (rate limited) and 503 (starting, database away): after ``Retry-After`` (seconds or an HTTP
    date), capped at ``RetryPolicy.max_retry_after_s``; without the header, exponential backoff;
  * a connection that could not be opened (the request never left);
  * for a call safe to repeat, 409 ``idempotency_key_in_progress`` (its first try still runs on
    another instance) after ``Retry-After``.
Not retried: a timeout or a dropped connection after the request was sent, unless the call says it
is safe to repeat (enrolment with its ``Idempotency-Key``): an identify that timed out may already
have cleared the passenger, and repeating it would report ``already_cleared``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import msgspec

from touchpoints.models import Problem

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 503})
IN_PROGRESS = "idempotency_key_in_progress"
USER_AGENT = "flighttoken-touchpoints/0.1"


class TouchpointError(Exception):
    """The call failed without an answer from the service (connection, timeout)."""


class ApiError(TouchpointError):
    """The service answered with an error: ``status`` and its stable ``code``."""

    def __init__(self, status: int, problem: Problem, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {problem.code}: {problem.detail or problem.title}")
        self.status = status
        self.problem = problem
        self.retry_after = retry_after

    @property
    def code(self) -> str:
        return self.problem.code


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    """Tries in all, the first included."""
    max_retry_after_s: float = 10.0
    """A longer Retry-After is cut to this: a passenger will not wait a minute at a gate."""
    max_total_wait_s: float = 20.0
    """Give up once the waits so far plus the next one would exceed this."""
    backoff_s: float = 0.25
    """First wait when the service gives no Retry-After; doubles each time, with jitter."""


NO_RETRY = RetryPolicy(max_attempts=1)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _problem(response: httpx.Response) -> Problem:
    try:
        return msgspec.json.decode(response.content, type=Problem)
    except msgspec.DecodeError:
        # Not problem+json (a proxy's HTML page, say): keep the status, show the start of the body.
        text = response.text[:200].strip()
        return Problem(status=response.status_code, code=f"http_{response.status_code}", detail=text)


class Transport:
    """One device's connection to the service. Share ``http`` between devices to pool connections."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 10.0,
                 retry: RetryPolicy | None = None, http: httpx.AsyncClient | None = None,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self.retry = retry or RetryPolicy()
        self._headers = {"User-Agent": USER_AGENT}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._own_http = http is None
        self.http = http or httpx.AsyncClient()
        self._sleep = sleep
        self.retries: Counter[str] = Counter()
        """Retries so far, by cause ("429", "503", "409", "connect", "timeout")."""

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(self, method: str, path: str, *, json: Any = None, content: bytes | None = None,
                      headers: dict[str, str] | None = None, repeatable: bool = False) -> httpx.Response:
        """Send, retrying as the module says; returns a 2xx response or raises ApiError/TouchpointError.

        ``repeatable``: the call may safely run twice (GET, or an idempotent POST), so a timeout or a
        connection dropped mid-request is retried too.
        """
        body = msgspec.json.encode(json) if json is not None else content
        all_headers = dict(self._headers)
        if json is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        url = self.base_url + path
        waited, attempt = 0.0, 0
        while True:
            attempt += 1
            try:
                response = await self.http.request(method, url, content=body, headers=all_headers,
                                                   timeout=self.timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                cause, delay, failure = "connect", None, TouchpointError(f"cannot reach {self.base_url}: {exc}")
            except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if not repeatable:
                    raise TouchpointError(f"{method} {path}: no answer ({type(exc).__name__}); not retried "
                                          "because the request may have been processed") from None
                cause, delay, failure = "timeout", None, TouchpointError(f"{method} {path}: {type(exc).__name__}")
            else:
                if response.status_code < 400:
                    return response
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
                failure = ApiError(response.status_code, _problem(response), retry_after)
                in_progress = repeatable and response.status_code == 409 and failure.code == IN_PROGRESS
                if response.status_code not in RETRY_STATUSES and not in_progress:
                    raise failure
                cause, delay = str(response.status_code), retry_after
            wait = self._next_wait(delay, attempt)
            if attempt >= self.retry.max_attempts or waited + wait > self.retry.max_total_wait_s:
                raise failure
            self.retries[cause] += 1
            waited += wait
            await self._sleep(wait)

    def _next_wait(self, retry_after: float | None, attempt: int) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry.max_retry_after_s)
        base = self.retry.backoff_s * (2 ** (attempt - 1))
        return min(base * (0.5 + random.random()), self.retry.max_retry_after_s)

    async def call(self, method: str, path: str, type_: type[T], **kwargs: Any) -> T:
        response = await self.request(method, path, **kwargs)
        return msgspec.json.decode(response.content, type=type_)
