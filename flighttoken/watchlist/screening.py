"""Screening captures against the watchlist, with random secondary referral as the cover (issue 17).

Called from the identify flow for every capture at the device kinds listed in
``FLIGHTTOKEN_WATCHLIST_TOUCHPOINTS`` (default: e-channels only), and after a screened kiosk
enrolment. Real e-gates send a share of travellers to an officer at random; FlightToken does the
same (``FLIGHTTOKEN_SECONDARY_REFERRAL_SHARE``, default 1 %, drawn with a CSPRNG), and a hit is
made to look exactly like one of those. What others can observe, and why it is the same:

* **Touchpoint answer.** A passenger who would proceed and is hit or drawn gets ``refer`` with
  ``see_officer`` (what any held token gets), no token, no passenger. A hit on a capture that
  would be refused anyway (poor capture, no match, a journey rule) keeps that refusal word for
  word: it is what the same capture gets without a hit, so replaying it anywhere shows nothing.
* **Hold and token.** The matched token is held for an officer (an ``authority`` hold) and stays
  ``enrolled``; lounges and gates then say ``see_officer``. Airline views show an
  ``officer_referral`` in force, the same for both causes.
* **Journey event, progress, summary, audit decisions.** A ``see_officer`` refer attributed to the
  passenger's flight with the match's score and margin and no token id, like any held token.
* **Work and timing.** Every screened capture with a face is searched (one executor hop, hit or
  not) and draws a random number; the referral is written by the decision's own statement, which
  every decision runs, referral or not (db/queries/journey.py). Officers are notified off the
  request's path.
* **Authority.** Only the alerts API tells the causes apart: each referral is an alert, ``kind``
  ``watchlist`` (with subject, case and score) or ``random``; officers release either the same way.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from flighttoken.devices.model import Device
from flighttoken.services import Services
from flighttoken.settings import Settings, watchlist_touchpoints
from flighttoken.watchlist import alerts
from flighttoken.watchlist.gallery import WatchlistHit

COVER_REASON = "see_officer"
WATCHLIST, RANDOM = "watchlist", "random"
_system_random = secrets.SystemRandom()


@lru_cache(maxsize=4)
def _kinds(settings: Settings) -> frozenset[str]:
    return watchlist_touchpoints(settings)


def screens(settings: Settings, device: Device) -> bool:
    return device.kind.value in _kinds(settings)


def drawn(share: float, uniform: Callable[[], float] = _system_random.random) -> bool:
    """Whether this passenger is referred at random: true with probability ``share``. ``uniform``
    (a float in [0, 1)) is the operating system's CSPRNG unless a test injects its own: a predictable
    draw would let someone who knows the generator's state tell random referrals from hits."""
    return uniform() < share


def referral(hit: WatchlistHit | None, would_proceed: bool, random_pick: bool) -> str | None:
    """The kind of officer referral this decision raises: every hit; a passenger who would proceed
    when drawn at random; otherwise none."""
    if hit is not None:
        return WATCHLIST
    if would_proceed and random_pick:
        return RANDOM
    return None


async def best_hit(services: Services, vector) -> WatchlistHit | None:
    """The best live subject at or above the watchlist threshold, if any."""
    hits = await services.watchlist.gallery.search(vector, datetime.now(UTC))
    if hits and hits[0].score >= services.settings.watchlist.watchlist_threshold:
        return hits[0]
    return None


async def search(services: Services, device: Device, analysis) -> WatchlistHit | None:
    """Screen a touchpoint capture: the hit, if any. Nothing is written here; the decision records
    the referral (journey/identify.py)."""
    if analysis.template is None or not screens(services.settings, device):
        return None
    return await best_hit(services, analysis.template.vector)


async def screen_enrolment(services: Services, device: Device, vector, token_id: uuid.UUID) -> None:
    """Kiosk screening (when ``kiosk`` is listed): call after the enrolment commits. The kiosk's
    answer does not change; a hit, or a random draw, holds the new token, so the e-channel refers it
    (see_officer) like any held token. The same statement runs either way."""
    if not screens(services.settings, device):
        return
    hit = await best_hit(services, vector)
    kind = referral(hit, True, drawn(services.settings.watchlist.secondary_referral_share))
    await alerts.raise_alert(services, device, kind, hit.subject_id if hit else None,
                             hit.score if hit else None, token_id)
