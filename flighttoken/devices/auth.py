"""API-key authentication and role guards.

Every route outside health and the API docs needs a key (``Authorization: Bearer <key>`` or
``X-API-Key``). The key's device kind decides what the caller may do; location scoping (a gate only
for flights at its gate) is enforced by the handlers that know the flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

import structlog
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from flighttoken.db.queries import devices as q
from flighttoken.devices.keys import hash_api_key
from flighttoken.devices.model import Device, DeviceKind
from flighttoken.errors import Forbidden, Unauthenticated

# Short enough that a disabled key stops working within seconds on every instance, long enough to
# keep a database round trip off every identification.
KEY_CACHE_SECONDS = 5.0
PUBLIC_PATHS = {"/health", "/schema", "/ops", "/metrics"}


class KeyCache:
    def __init__(self, ttl: float = KEY_CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._entries: dict[bytes, tuple[float, Device]] = {}

    def get(self, key_hash: bytes) -> Device | None:
        hit = self._entries.get(key_hash)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        return None

    def put(self, key_hash: bytes, device: Device) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key_hash] = (time.monotonic() + self.ttl, device)

    def clear(self) -> None:
        self._entries.clear()

    def forget_device(self, device_id: object) -> None:
        """Drop every cached key of this device (disabled or rotated)."""
        for key_hash in [h for h, (_, d) in self._entries.items() if d.id == device_id]:
            self._entries.pop(key_hash, None)


def _presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return connection.headers.get("x-api-key", "").strip()


# Routes whose very existence is confidential (the watchlist) set this opt: their own guard then
# answers a missing or bad key with the same 404 an unknown path gets, instead of a 401.
HIDDEN_ROUTE = "hidden_route"
_MISSING_KEY = Unauthenticated("send the device's API key as 'Authorization: Bearer <key>'")
_UNKNOWN_KEY = Unauthenticated("unknown or disabled API key", code="invalid_api_key")
PUBLIC_KINDS = frozenset(DeviceKind) - {DeviceKind.AUTHORITY}
AUTHORITY_KINDS = frozenset({DeviceKind.AUTHORITY})


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    """Resolves the key to a Device, or to None with the reason kept in the scope; the guards
    turn None into 401 (or, for hidden routes, 404). Every route has a guard (see require_device).

    ``kinds`` are the device kinds this listener knows: any other key is an unknown key there (the
    public listener never accepts an authority key, the authority listener nothing else)."""

    def __init__(self, app: Any, *, kinds: frozenset[DeviceKind], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.kinds = kinds

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        key = _presented_key(connection)
        if not key:
            return _refused(connection, _MISSING_KEY)
        services = connection.app.state.services
        key_hash = hash_api_key(key)
        device = services.key_cache.get(key_hash)
        if device is None:
            device = await q.by_key_hash(services.db(), key_hash)
            if device is None:
                return _refused(connection, _UNKNOWN_KEY)
            services.key_cache.put(key_hash, device)
        if device.kind not in self.kinds:
            return _refused(connection, _UNKNOWN_KEY)
        structlog.contextvars.bind_contextvars(device_id=str(device.id), device_kind=device.kind.value)
        return AuthenticationResult(user=device, auth=None)


def _refused(connection: ASGIConnection[Any, Any, Any, Any], problem: Unauthenticated) -> AuthenticationResult:
    """No device: the problem is kept in the scope for the guard to raise if the route needs a device.
    (Litestar types the scope as a TypedDict without this key of ours.)"""
    cast(dict[str, Any], connection.scope)["auth_problem"] = problem
    return AuthenticationResult(user=None, auth=None)


def _caller(connection: ASGIConnection[Any, Any, Any, Any]) -> Device:
    device: Device | None = connection.scope.get("user")
    if device is None:
        # Litestar skips authentication for OPTIONS/HEAD: no problem recorded means no key seen.
        raise connection.scope.get("auth_problem") or _MISSING_KEY
    return device


# Guards are coroutines on purpose: Litestar runs a plain-function guard in a worker thread, two
# thread hops per request for a few dictionary look-ups (ms each when the cores are busy with faces).
async def require_device(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """App-wide guard: every route outside the public paths needs a valid key, so a route that
    forgot its own guard is still closed. Hidden routes leave the answer to their own guard."""
    path = connection.scope["path"]
    if any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS) or handler.opt.get(HIDDEN_ROUTE):
        return
    _caller(connection)


def allow(*kinds: DeviceKind) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler],
                                           Coroutine[Any, Any, None]]:
    """Guard: only these kinds of key may call the route."""
    allowed = frozenset(kinds)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        device = _caller(connection)
        if device.kind not in allowed:
            raise Forbidden(f"a {device.kind.value} key may not call this endpoint")

    return guard


# A request whose ``user`` is the authenticated device.
DeviceRequest = Request[Device, Any, Any]
