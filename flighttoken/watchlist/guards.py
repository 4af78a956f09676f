"""The authority-only guard: any other key is told the route does not exist.

A 403 would confirm to a gate, lounge, kiosk or airline key that watchlist endpoints are there
for someone. The 404 is the router's own exception, so the problem body is the one an unknown
path gets. Only the request id and the rate-limit headers still differ: route middleware adds
them, and an unknown path never reaches it.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.handlers.base import BaseRouteHandler

from flighttoken.devices.model import Device, DeviceKind


async def authority_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    # No key, a bad key and a non-authority key all get the unknown-path 404 (the controllers are
    # marked HIDDEN_ROUTE, so the app-wide guard leaves the answer to this one).
    device: Device | None = connection.scope.get("user")
    if device is None or device.kind is not DeviceKind.AUTHORITY:
        raise NotFoundException()
