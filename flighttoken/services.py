"""What a running instance holds: settings, the pool, the face engine, the galleries, readiness.

One ``Services`` lives on ``app.state``; handlers receive it by dependency injection, tests can
build the app around a pre-loaded engine to avoid loading models per test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import asyncpg

from flighttoken.crypto.document_key import DocumentKeys
from flighttoken.devices.auth import KeyCache
from flighttoken.galleries.quarantine import Quarantine
from flighttoken.galleries.registry import GalleryRegistry
from flighttoken.privacy.vault import TemplateVault
from flighttoken.settings import Settings
from flighttoken.watchlist.state import WatchlistState

if TYPE_CHECKING:
    from flighttoken.faces.batcher import BatchStats
    from flighttoken.faces.engine import FaceAnalysis


class Engine(Protocol):
    """What the service asks of the face engine (flighttoken.faces.engine.FaceEngine; tests may inject
    a pre-loaded one or a stand-in)."""

    @property
    def model_id(self) -> str: ...

    async def analyse(self, image_bytes: bytes, /) -> FaceAnalysis: ...

    def batch_stats(self) -> BatchStats: ...


class SyncEvents(Protocol):
    """What the service asks of the sync listener (flighttoken.sync.listener.SyncListener)."""

    connected: asyncio.Event
    """Set while its LISTEN connection is up (tests and operators wait on it)."""

    def on(self, kind: str, handler: Callable[..., Awaitable[None]]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(eq=False)
class Services:
    settings: Settings
    engine: Engine = None  # type: ignore[assignment]  # loaded by the lifespan unless injected
    pool: asyncpg.Pool | None = None
    dsn: str = ""
    vault: TemplateVault = None  # type: ignore[assignment]  # set by the lifespan
    document_keys: DocumentKeys = None  # type: ignore[assignment]  # set by the lifespan
    galleries: GalleryRegistry = field(default_factory=GalleryRegistry)
    key_cache: KeyCache = field(default_factory=KeyCache)
    sync: SyncEvents | None = None  # started by the lifespan
    watchlist: WatchlistState = field(default_factory=WatchlistState)
    quarantine: Quarantine = field(default_factory=Quarantine)
    """Template rows this instance could not decrypt and set aside (galleries/quarantine.py)."""
    enrolment_locks: defaultdict[datetime, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    """One enrolment at a time per departure window on this instance: the duplicate-face check and
    the gallery insert must not interleave with another enrolment in the same window. Per instance,
    not per module: an asyncio lock belongs to the event loop that first waits on it."""
    idempotent_requests: dict[tuple[uuid.UUID, str], asyncio.Event] = field(default_factory=dict)
    """Idempotency keys (device, key) whose first request runs on this instance: a concurrent retry
    here waits for its answer (flighttoken/journey/idempotency.py)."""
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """Names this instance in sync events, so it skips the ones it published itself."""
    models_loaded: bool = False
    galleries_loaded: bool = False
    shutting_down: bool = False
    startup_error: str = ""
    demo: bool = False

    @property
    def ready(self) -> bool:
        return self.models_loaded and self.galleries_loaded and not self.shutting_down

    def device_changed(self, device_id: uuid.UUID) -> None:
        """A device's key was disabled or rotated (here or on another instance): forget it at once
        and end the alert streams it holds open."""
        self.key_cache.forget_device(device_id)
        self.watchlist.hub.end_streams_of(device_id)

    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "database pool used before start-up finished"
        return self.pool
