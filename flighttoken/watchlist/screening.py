"""Screening captures against the watchlist: ``screen`` returns the hit, or None.

Called from the identify flow for every capture at the device kinds listed in
``FLIGHTTOKEN_WATCHLIST_TOUCHPOINTS`` (default: e-channels only), and after a screened kiosk
enrolment. Nothing is decided or written here: the journey answers, and records any referral
with the decision, so that a hit looks exactly like a random referral (journey/cover.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from flighttoken.devices.model import Device
from flighttoken.services import Services
from flighttoken.settings import Settings, watchlist_touchpoints
from flighttoken.watchlist.gallery import WatchlistHit


@lru_cache(maxsize=4)
def _kinds(settings: Settings) -> frozenset[str]:
    return watchlist_touchpoints(settings)


def screens(settings: Settings, device: Device) -> bool:
    return device.kind.value in _kinds(settings)


async def best_hit(services: Services, vector) -> WatchlistHit | None:
    """The best live subject at or above the watchlist threshold, if any."""
    hits = await services.watchlist.gallery.search(vector, datetime.now(UTC))
    if hits and hits[0].score >= services.settings.watchlist.watchlist_threshold:
        return hits[0]
    return None


async def screen(services: Services, device: Device, analysis) -> WatchlistHit | None:
    """Screen a touchpoint capture: the hit, if any (None too when this kind is not screened or the
    capture has no face). Every screened capture with a face is searched, hit or not."""
    if analysis.template is None or not screens(services.settings, device):
        return None
    return await best_hit(services, analysis.template.vector)
