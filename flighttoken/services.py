"""What a running instance holds: settings, the pool, the face engine, the galleries, readiness.

One ``Services`` lives on ``app.state``; handlers receive it by dependency injection, tests can
build the app around a pre-loaded engine to avoid loading models per test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flighttoken.settings import Settings

if TYPE_CHECKING:
    import asyncpg


@dataclass(eq=False)
class Services:
    settings: Settings
    engine: Any = None  # flighttoken.faces.engine.FaceEngine, loaded by the lifespan unless injected
    pool: asyncpg.Pool | None = None
    dsn: str = ""
    models_loaded: bool = False
    galleries_loaded: bool = False
    shutting_down: bool = False
    startup_error: str = ""

    @property
    def ready(self) -> bool:
        return self.models_loaded and self.galleries_loaded and not self.shutting_down

    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "database pool used before start-up finished"
        return self.pool
