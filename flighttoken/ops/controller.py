"""The ops dashboard: a static page at /ops (no key needed to load it, no build step) and the JSON
summary it polls, which needs an admin or airline_ops key.

The page keeps the key in sessionStorage only (gone when the tab closes) and sends it as a bearer
header; it never puts it in a URL. A strict Content-Security-Policy keeps other scripts away from it.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Controller, Response, get
from litestar.di import NamedDependency

from flighttoken.devices.auth import DeviceRequest, allow
from flighttoken.devices.model import DeviceKind
from flighttoken.ops.summary import OpsSummary, summary
from flighttoken.services import Services

STATIC = Path(__file__).resolve().parent / "static"
# Read once at import: three small files, so no request ever touches the disk.
_FILES = {name: (STATIC / name).read_bytes() for name in ("index.html", "app.js", "app.css", "favicon.svg")}
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _file(name: str, media_type: str) -> Response[bytes]:
    return Response(_FILES[name], media_type=media_type, headers=_HEADERS)


class OpsPageController(Controller):
    path = "/ops"
    include_in_schema = False

    @get("/", sync_to_thread=False)
    def page(self) -> Response[bytes]:
        return _file("index.html", "text/html; charset=utf-8")

    @get("/app.js", sync_to_thread=False)
    def script(self) -> Response[bytes]:
        return _file("app.js", "text/javascript; charset=utf-8")

    @get("/app.css", sync_to_thread=False)
    def style(self) -> Response[bytes]:
        return _file("app.css", "text/css; charset=utf-8")

    @get("/favicon.svg", sync_to_thread=False)
    def icon(self) -> Response[bytes]:
        return _file("favicon.svg", "image/svg+xml")


class OpsApiController(Controller):
    path = "/v1/ops"
    tags = ["operations"]
    guards = [allow(DeviceKind.ADMIN, DeviceKind.AIRLINE_OPS)]

    @get("/summary", summary="Today's boarding at a glance (what the /ops dashboard shows)",
         description="An airline_ops key sees its airline's flights and the decisions attributed to them; "
                     "an admin key sees everything, including decisions that matched nobody.")
    async def summary(self, services: NamedDependency[Services], request: DeviceRequest) -> OpsSummary:
        return await summary(services, request.user)
