"""The authority-only guard: any other key is told the route does not exist.

The routes it guards are served only on the authority's own listener (flighttoken/app.py); on the
public one they do not exist at all, which is what hides them there from every method and path
variant, the rate limiter and the metrics. This guard is the second wall: should another key reach
the authority listener, it gets the router's own 404, the problem body an unknown path gets.
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
