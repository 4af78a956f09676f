"""Watchlist start-up and shutdown: load the gallery, subscribe to sync events, run the sweep."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from flighttoken.services import Services
from flighttoken.watchlist import service, sync

log = structlog.get_logger(__name__)


async def start(services: Services, stack: contextlib.AsyncExitStack) -> None:
    """Called by the lifespan after the passenger galleries and the sync listener."""
    sync.register(services)
    watchlist = services.settings.watchlist
    if watchlist.secondary_referral_share == 0 and watchlist.watchlist_touchpoints.strip():
        # Set on purpose only: with no random referrals, every officer referral at a touchpoint is a hit.
        log.warning("secondary_referral_off", setting="FLIGHTTOKEN_SECONDARY_REFERRAL_SHARE")
    await service.load_gallery(services)
    task = asyncio.create_task(_sweep(services), name="watchlist-sweep")
    stack.push_async_callback(_stop, task)
    stack.callback(services.watchlist.hub.close)


async def _sweep(services: Services) -> None:
    """Delete expired subjects' templates and repair missed sync events, periodically."""
    while True:
        await asyncio.sleep(services.settings.watchlist.watchlist_sweep_s)
        try:
            await service.expire_due(services)
            await sync.reconcile(services)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watchlist_sweep_failed")  # the next round retries


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
