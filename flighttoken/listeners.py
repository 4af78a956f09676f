"""One uvicorn server, one or two listening sockets: the public one and the authority's.

Both sockets belong to the same server, so one lifespan starts the shared ``Services`` before
either accepts a request, and one graceful shutdown drains both before the pool closes. Each
connection goes to the app of the socket it arrived on (its local port); anything else, including
a connection whose local address is unknown, goes to the public app, which has no authority route.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn
from litestar import Litestar
from litestar.types import Receive, Scope, Send

from flighttoken.settings import Settings


class Listeners:
    """The ASGI app uvicorn runs: dispatches by the listening port."""

    def __init__(self, public: Litestar, authority: Litestar | None, authority_port: int) -> None:
        self.public = public
        self.authority = authority
        self.authority_port = authority_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app: Any = self.public
        if self.authority is not None and scope["type"] != "lifespan":
            server = scope.get("server")
            if server is not None and server[1] == self.authority_port:
                app = self.authority
        await app(scope, receive, send)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv6 when the host is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def sockets_for(settings: Settings) -> list[socket.socket]:
    """The public socket, and the authority's when its port is set. Raises OSError (port in use)."""
    out = [bind(settings.http.host, settings.http.port)]
    if settings.http.authority_port:
        try:
            out.append(bind(settings.http.authority_host, settings.http.authority_port))
        except OSError:
            out[0].close()
            raise
    return out


def server_for(app: Litestar, **config: Any) -> uvicorn.Server:
    """A uvicorn server for the public app and, when configured, the authority app beside it."""
    settings: Settings = app.state.services.settings
    asgi = Listeners(app, app.state.authority_app, settings.http.authority_port)
    return uvicorn.Server(uvicorn.Config(asgi, host=settings.http.host, port=settings.http.port, log_config=None,
                                         lifespan="on", **config))
