"""Screening touchpoint captures against the watchlist, so that the touchpoint learns nothing.

Called from the identify flow for every capture at the device kinds listed in
``FLIGHTTOKEN_WATCHLIST_TOUCHPOINTS`` (default: e-channels only). What the touchpoint can observe
on a hit, and why it is the same as without one:

* **Response.** The decision becomes a capture refusal: ``refer`` with ``low_detection_score``
  (or the capture's own quality reason, if it already had one), no token, no passenger — exactly
  what a real poor capture returns. ``low_detection_score`` was chosen because real captures
  produce it, it is a capture problem (so the touchpoint's normal reaction, retry then send to an
  officer, is what interception needs), and unlike darkness, size or pose, nobody at the gate
  and no camera can see that it is wrong: it is the server detector's own confidence.
* **Journey event.** identify writes it as that capture refusal: no flight, token, score or
  margin, as for any poor capture. The alert lives only in the authority's ``alerts`` table.
* **Timing.** Every capture with a face at a screened kind is searched, hit or not, through one
  executor hop even when the watchlist is empty. A hit adds one database round trip (alert, hold
  and audit are one statement); the passenger search it shares with an ordinary match.
* **Later touchpoints.** The token the face matched is put on hold; lounges and gates then say
  ``see_officer``, which every hold produces, staff holds included.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import lru_cache

from flighttoken.devices.model import Device
from flighttoken.faces import quality
from flighttoken.journey.rules import MatchOutcome
from flighttoken.services import Services
from flighttoken.settings import Settings, watchlist_touchpoints
from flighttoken.watchlist import alerts
from flighttoken.watchlist.gallery import WatchlistHit

COVER_REASON = quality.LOW_DETECTION_SCORE
# Refusals a capture earns on its own: a hit on such a capture keeps its reason.
CAPTURE_REASONS = frozenset({quality.NO_FACE, quality.LOW_DETECTION_SCORE, quality.FACE_TOO_SMALL,
                             quality.TOO_BLURRY, quality.TOO_DARK, quality.TOO_BRIGHT, quality.HEAD_TURNED,
                             quality.HEAD_TILTED, "tailgating"})


@lru_cache(maxsize=4)
def _kinds(settings: Settings) -> frozenset[str]:
    return watchlist_touchpoints(settings)


def screens(settings: Settings, device: Device) -> bool:
    return device.kind.value in _kinds(settings)


async def best_hit(services: Services, vector) -> WatchlistHit | None:
    """The best live subject at or above the watchlist threshold, if any."""
    hits = await services.watchlist.gallery.search(vector, datetime.now(UTC))
    if hits and hits[0].score >= services.settings.watchlist_threshold:
        return hits[0]
    return None


async def screen(services: Services, device: Device, analysis, match: MatchOutcome) -> MatchOutcome:
    """Search the watchlist; on a hit raise an alert, hold the matched token, and return the
    decision the touchpoint must see instead (see the module docstring)."""
    if analysis.template is None or not screens(services.settings, device):
        return match
    hit = await best_hit(services, analysis.template.vector)
    if hit is None:
        return match
    await alerts.raise_alert(services, device, hit.subject_id, hit.score, match.token_id)
    reason = match.reason if match.reason in CAPTURE_REASONS else COVER_REASON
    return MatchOutcome(None, reason, None, None)


async def screen_enrolment(services: Services, device: Device, vector, token_id: uuid.UUID) -> None:
    """Kiosk screening (when ``kiosk`` is listed): call after the enrolment commits. The kiosk's
    answer does not change; the new token is held, so e-channels, lounges and gates refer it."""
    if not screens(services.settings, device):
        return
    hit = await best_hit(services, vector)
    if hit is not None:
        await alerts.raise_alert(services, device, hit.subject_id, hit.score, token_id)
