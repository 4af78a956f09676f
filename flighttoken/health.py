"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency

from flighttoken.services import Services


class Health(msgspec.Struct):
    status: str
    models_loaded: bool = False
    galleries_loaded: bool = False
    database: str = "unknown"
    quarantined_templates: list[str] = []
    """Tokens whose template row failed to decrypt: set aside and held for staff; still ready."""
    # Watchlist rows set aside the same way are counted only on the authority listener's /metrics
    # (flighttoken_quarantined_watchlist_templates): public endpoints never speak of the watchlist.


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", summary="The process is up and serving HTTP")
    async def live(self) -> Health:
        return Health(status="live")

    @get("/ready", summary="Models and galleries are loaded and the database answers")
    async def ready(self, services: NamedDependency[Services]) -> Response[Health]:
        database = "down"
        if services.pool is not None:
            try:
                async with services.pool.acquire(timeout=1.0) as conn:
                    await conn.fetchval("SELECT 1", timeout=1.0)
                database = "up"
            except Exception:  # any failure means "not ready", never a 500 from a probe
                database = "down"
        ok = services.ready and database == "up"
        body = Health(status="ready" if ok else "not_ready", models_loaded=services.models_loaded,
                      galleries_loaded=services.galleries_loaded, database=database,
                      quarantined_templates=sorted(str(t) for t in services.quarantine.tokens))
        return Response(body, status_code=200 if ok else 503, headers={} if ok else {"Retry-After": "1"})
