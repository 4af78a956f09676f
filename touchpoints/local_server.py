"""An ASGI app served inside the running event loop, on a free loopback port, for as long as a
``with`` block lasts: the simulator's DCS receiver, and the stand-in services of the tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def serving(app: Any, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Serve ``app`` on ``host`` at a port the OS picks; yields the port once it accepts connections."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning", access_log=False,
                                           lifespan="off"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the caller's loop owns signals
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what kept it from starting
            raise RuntimeError("the local server did not start")
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task
