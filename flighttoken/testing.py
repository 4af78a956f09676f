"""Run helpers shared by the tests and the benchmarks: the real service on loopback ports inside
the caller's event loop, a fresh PostgreSQL database, the shared LFW photos, decode bombs.

Never imported by the service itself; it lives in the package so that ``ops/`` need not import ``tests/``.
"""

from __future__ import annotations

import asyncio
import io
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import numpy as np
from PIL import Image

from flighttoken.app import create_app
from flighttoken.db.keystore import SUFFIX as KEYSTORE_SUFFIX
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


class ServiceFactory:
    """Settings with a test's overrides, and the service started on them (tests/conftest.py's make_service)."""

    def __init__(self, base: Settings, database_url: str, engine: Any) -> None:
        self.base, self.database_url, self.engine = base, database_url, engine

    def settings(self, **overrides: Any) -> Settings:
        """The test settings on this module's database; ``database_url=...`` points elsewhere."""
        return self.base.replace(**{"database_url": self.database_url, **overrides})

    def __call__(self, settings: Settings | None = None, *, engine: Any = None, authority: bool = False,
                 **overrides: Any) -> AbstractAsyncContextManager[RunningService]:
        """``run_service`` on ``settings`` (default: :meth:`settings`) with ``overrides`` on top."""
        settings = settings.replace(**overrides) if settings else self.settings(**overrides)
        return run_service(settings, engine=engine or self.engine, authority=authority)


# ---- database -------------------------------------------------------------------------------

def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def create_database(admin_dsn: str) -> tuple[str, str]:
    name = "ft_test_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    """Drop the database and its default key store (``<name>_keys``, created by the service)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        for db in (name, name + KEYSTORE_SUFFIX):
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await conn.close()


# ---- faces ----------------------------------------------------------------------------------

def lfw_root(faces_dir: str) -> Path:
    root = Path(faces_dir) / "lfw-train"
    if not root.is_dir():
        # Fail, never skip: a missing data set must turn CI red, not silently shrink the suite.
        raise FileNotFoundError(f"LFW photos not found at {root}: set FLIGHTTOKEN_FACES_DIR")
    return root


def identities(faces_dir: str, *, min_photos: int = 1, max_photos: int | None = None) -> list[tuple[str, list[Path]]]:
    """(name, photos) sorted by name, for identities with a photo count in range."""
    out = []
    for folder in sorted(lfw_root(faces_dir).iterdir()):
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) >= min_photos and (max_photos is None or len(photos) <= max_photos):
            out.append((folder.name, photos))
    return out


# ---- hostile_images -------------------------------------------------------------------------

def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def png16_bomb(side: int = 6000) -> bytes:
    """A ``side`` x ``side`` 16-bit greyscale PNG with a few stripes: ~70 kB of zlib for 36 MP
    (the red team's was 0.8 MB and took 675 ms to decode against 62 ms for a photo)."""
    pixels = np.zeros((side, side), np.uint16)
    pixels[::50] = 60000
    return png_bytes(Image.fromarray(pixels))


def palette_bomb(side: int = 6000) -> bytes:
    """A ``side`` x ``side`` palette PNG: a few kB that expand to 3 bytes a pixel in RGB."""
    return png_bytes(Image.new("P", (side, side)))


def big_png(width: int = 4000, height: int = 3000) -> bytes:
    """Large but within the limits: a 12 MP 8-bit PNG (the biggest touchpoint camera's frame)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[::40] = 200
    return png_bytes(Image.fromarray(pixels))
