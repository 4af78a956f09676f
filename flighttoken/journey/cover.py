"""What a screened touchpoint answers: random secondary referral as the cover for a watchlist hit (issue 17).

The watchlist only finds the hit (watchlist/screening.py); the journey decides here what the
passenger is told and which referral the decision records. Real e-gates send a share of travellers
to an officer at random; FlightToken does the same (``FLIGHTTOKEN_SECONDARY_REFERRAL_SHARE``,
default 1 %, drawn with a CSPRNG), and a hit is made to look exactly like one of those. What others
can observe, and why it is the same:

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

from flighttoken.db.queries import journey as journey_q
from flighttoken.devices.model import Device
from flighttoken.services import Services
from flighttoken.sync.events import CHANNEL
from flighttoken.vocabulary import DecisionReason
from flighttoken.watchlist import alerts, screening
from flighttoken.watchlist.gallery import WatchlistHit

COVER_REASON = DecisionReason.SEE_OFFICER
WATCHLIST, RANDOM = "watchlist", "random"
_system_random = secrets.SystemRandom()


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


def touchpoint_referral(services: Services, device: Device, hit: WatchlistHit | None, reason: DecisionReason,
                        token_id: uuid.UUID | None) -> journey_q.Referral | None:
    """The officer referral this screened decision records, if any. The draw is made for every
    screened decision, so each does the same work."""
    kind = referral(hit, reason == DecisionReason.MATCHED, drawn(services.settings.watchlist.secondary_referral_share))
    if kind is None:
        return None
    return journey_q.Referral(kind=kind, subject_id=hit.subject_id if hit else None, score=hit.score if hit else None,
                              hold_token_id=token_id, terminal=device.terminal, gate=device.gate,
                              lounge_id=device.lounge_id, channel=CHANNEL, origin=services.instance_id)


async def screen_enrolment(services: Services, device: Device, vector, token_id: uuid.UUID) -> None:
    """Kiosk screening (when ``kiosk`` is listed): call after the enrolment commits. The kiosk's
    answer does not change; a hit, or a random draw, holds the new token, so the e-channel refers it
    (see_officer) like any held token. The same statement runs either way."""
    if not screening.screens(services.settings, device):
        return
    hit = await screening.best_hit(services, vector)
    kind = referral(hit, True, drawn(services.settings.watchlist.secondary_referral_share))
    await alerts.raise_alert(services, device, kind, hit.subject_id if hit else None,
                             hit.score if hit else None, token_id)
