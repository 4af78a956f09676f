"""API-key authentication and role guards.

Every route outside health and the API docs needs a key (``Authorization: Bearer <key>`` or
``X-API-Key``). The key's device kind decides what the caller may do; location scoping (a gate only
for flights at its gate) is enforced by the handlers that know the flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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


def _presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return connection.headers.get("x-api-key", "").strip()


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        key = _presented_key(connection)
        if not key:
            raise Unauthenticated("send the device's API key as 'Authorization: Bearer <key>'")
        services = connection.app.state.services
        key_hash = hash_api_key(key)
        device = services.key_cache.get(key_hash)
        if device is None:
            device = await q.by_key_hash(services.db(), key_hash)
            if device is None:
                raise Unauthenticated("unknown or disabled API key", code="invalid_api_key")
            services.key_cache.put(key_hash, device)
        structlog.contextvars.bind_contextvars(device_id=str(device.id), device_kind=device.kind.value)
        return AuthenticationResult(user=device, auth=None)


def allow(*kinds: DeviceKind) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    """Guard: only these kinds of key may call the route."""
    allowed = frozenset(kinds)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        # Litestar skips authentication for OPTIONS/HEAD; without a device there is nothing to allow.
        device: Device | None = connection.scope.get("user")
        if device is None:
            raise Unauthenticated("send the device's API key as 'Authorization: Bearer <key>'")
        if device.kind not in allowed:
            raise Forbidden(f"a {device.kind.value} key may not call this endpoint")

    return guard


# A request whose ``user`` is the authenticated device.
DeviceRequest = Request[Device, Any, Any]
