"""The real service on real loopback ports, inside the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from flighttoken.app import create_app
from flighttoken.listeners import server_for, sockets_for
from flighttoken.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningService:
    def __init__(self, app: Any, base_url: str, authority_url: str | None = None) -> None:
        self.app = app
        self.authority_app = app.state.authority_app
        self.base_url = base_url
        self.authority_url = authority_url
        self.services = app.state.services

    def client(self, api_key: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        """A client of the public listener (touchpoints, kiosks, airline staff, admins)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30, **kwargs)

    def authority_client(self, api_key: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        """A client of the authority listener (run_service(..., authority=True))."""
        assert self.authority_url, "start the service with run_service(..., authority=True)"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.AsyncClient(base_url=self.authority_url, headers=headers, timeout=30, **kwargs)


@asynccontextmanager
async def run_service(settings: Settings, *, engine: Any = None,
                      authority: bool = False) -> AsyncIterator[RunningService]:
    """Serve as ``flighttoken serve`` does; ``authority=True`` also opens the authority listener."""
    settings = settings.replace(host="127.0.0.1", port=free_port(),
                                       authority_host="127.0.0.1", authority_port=free_port() if authority else 0)
    app = create_app(settings, engine=engine)
    server = server_for(app, access_log=False, http="httptools")  # as flighttoken/cli/serve.py serves
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # tests own the signals
    task = asyncio.create_task(server.serve(sockets=sockets_for(settings)))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"service did not start: {app.state.services.startup_error}")
        await asyncio.sleep(0.02)
    authority_url = f"http://127.0.0.1:{settings.http.authority_port}" if authority else None
    try:
        yield RunningService(app, f"http://127.0.0.1:{settings.http.port}", authority_url)
    finally:
        server.should_exit = True
        await task
