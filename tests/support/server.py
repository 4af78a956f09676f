"""The real service on a real loopback port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn

from flighttoken.app import create_app
from flighttoken.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningService:
    def __init__(self, app: Any, base_url: str) -> None:
        self.app = app
        self.base_url = base_url
        self.services = app.state.services

    def client(self, api_key: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30, **kwargs)


@asynccontextmanager
async def run_service(settings: Settings, *, engine: Any = None) -> AsyncIterator[RunningService]:
    app = create_app(settings, engine=engine)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on",
                            access_log=False, http="httptools")  # as flighttoken/cli.py serves
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # tests own the signals
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"service did not start: {app.state.services.startup_error}")
        await asyncio.sleep(0.02)
    try:
        yield RunningService(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await task
