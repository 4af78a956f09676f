"""Face-only decisions at every touchpoint (bag drops, e-Security Gates, e-channels, lounges, boarding
gates): "who is this?" → proceed or refer.

Each touchpoint searches only its purpose galleries (galleries/purpose.py): the people it may admit
now, on a gate's boarding flights or in the departure windows about to leave, at the threshold for
the number of faces actually searched. Only that search can proceed. When it finds no one, a second,
audit-only search of everyone live (the wide flight and window galleries) at a stricter threshold
(decisions/match.py ``misuse_threshold_for``) names the token behind a misuse refusal
(``already_cleared``, ``already_boarded``, ``wrong_flight``...): its result is a ``Misuse``, which
is only ever turned into a refer reason. Every decision, proceed or refer, is stored as a journey
event (never the image or the template).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from flighttoken.db.queries import flights as flight_q
from flighttoken.db.queries import journey as journey_q
from flighttoken.db.queries import tokens as token_q
from flighttoken.decisions.match import MatchOutcome, decide_match, misuse_threshold_for, threshold_for
from flighttoken.decisions.policy import TOUCHPOINTS, Searches, TouchpointPolicy
from flighttoken.devices.model import Device
from flighttoken.flights.windows import windows_between
from flighttoken.journey import cover
from flighttoken.journey.rules import check_journey, token_at_touchpoint
from flighttoken.journey.schemas import Decision, PassengerView
from flighttoken.services import Services
from flighttoken.sync.apply import restate
from flighttoken.sync.events import CHANNEL
from flighttoken.vocabulary import DecisionReason, IdentifyMethod
from flighttoken.watchlist import alerts, screening
from flighttoken.watchlist.gallery import WatchlistHit

log = structlog.get_logger(__name__)
# Refusals that are evidence of misuse, not of a poor capture: audited beyond the journey event.
_AUDITED_REFUSALS = frozenset({DecisionReason.ALREADY_CLEARED, DecisionReason.ALREADY_BOARDED,
                               DecisionReason.TOKEN_ENDED, DecisionReason.WRONG_FLIGHT,
                               DecisionReason.FACE_MISMATCH})


@dataclass(frozen=True, slots=True)
class Misuse:
    """What the audit-only misuse search found: a token to name in a refusal, never one to admit
    (``_misuse_reason`` turns it into a refer reason whatever the journey rules say)."""

    token_id: uuid.UUID
    score: float | None
    margin: float | None


async def identify(services: Services, device: Device, image: bytes, bags: int | None = None) -> Decision:
    """One capture → proceed or refer. ``bags``: what a bag drop reports (the caller checked that
    this kind reports bags, ``TouchpointPolicy.reports_bags``), recorded on the decision."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    horizon = timedelta(seconds=services.settings.galleries.clearance_horizon_s)
    policy = TOUCHPOINTS[device.kind]
    gate_flights: list[uuid.UUID] = []
    if policy.searches is Searches.FLIGHTS:
        # The gate's boarding flights are read while the face engine works: a round trip off the path.
        analysis, boarding = await asyncio.gather(services.engine.analyse(image),
                                                  flight_q.boarding_at_gate(services.db(), device.gate or ""))
        gate_flights = [f.id for f in boarding]
    else:
        analysis = await services.engine.analyse(image)
    refusal = capture_refusal(policy, analysis)
    misuse = None
    if refusal is not None:
        match = MatchOutcome(None, refusal, None, None)
    elif policy.searches is Searches.FLIGHTS and not gate_flights:
        match = MatchOutcome(None, DecisionReason.GATE_NOT_BOARDING, None, None)
    else:
        assert analysis.template is not None  # capture_refusal refused a capture without a face
        match, misuse = await _match(services, device, policy, analysis.template.vector, gate_flights, now, horizon)
    # Watchlist screening (issues 5, 17): searched here, decided and recorded with the decision.
    hit = await screening.screen(services, device, analysis)
    return await conclude(services, device, match, misuse, hit, now, horizon, started, bags=bags)


def capture_refusal(policy: TouchpointPolicy, analysis) -> DecisionReason | None:
    if analysis.template is None:
        return DecisionReason.NO_FACE
    if analysis.quality_failures:
        return DecisionReason(analysis.quality_failures[0])
    if policy.refuses_tailgating and analysis.tailgating:
        return DecisionReason.TAILGATING
    return None


async def _match(services: Services, device: Device, policy: TouchpointPolicy, vector, gate_flights: list[uuid.UUID],
                 now: datetime, horizon: timedelta) -> tuple[MatchOutcome, Misuse | None]:
    s, galleries = services.settings, services.galleries
    margin = s.decisions.decision_margin
    windows = windows_between(now - horizon, now + horizon, s.galleries.window_seconds)
    keys = gate_flights if policy.searches is Searches.FLIGHTS else windows
    # The threshold follows the number of faces actually searched (issue 8: FPIR grows with N):
    # the purpose galleries', not the window's (issue 19).
    searched = galleries.purpose_size(device.kind, keys)
    match = decide_match(await galleries.search_purpose(device.kind, keys, vector),
                         threshold_for(s, device.kind, searched), margin)
    if match.reason != DecisionReason.NO_MATCH:
        return match, None
    # No one this touchpoint may admit: is it someone known who is in the wrong place (cleared
    # already, boarded, another flight's gate)? Everyone live, at the misuse threshold.
    # A gate's flights are normally in the windows too: counted twice, the threshold errs strict.
    wide_faces = (sum(galleries.window_size(w) for w in windows)
                  + sum(galleries.flight_size(f) for f in gate_flights))
    found = decide_match(await galleries.search_wide(windows, gate_flights, vector),
                         misuse_threshold_for(s, device.kind, wide_faces), margin)
    if found.token_id is None:
        return match, None
    return match, Misuse(found.token_id, found.score, found.margin)


def _misuse_reason(device: Device, row, now: datetime, horizon: timedelta, refusal: DecisionReason) -> DecisionReason:
    """The refer reason for a token the misuse search found: the journey rule's refusal, or, if the
    rules would admit it (its purpose gallery here has not caught up yet), the purpose search's own
    ``refusal``. Never ``matched``: this search cannot open a gate."""
    reason = check_journey(device, token_at_touchpoint(row), now, horizon).reason
    if reason == DecisionReason.MATCHED:
        log.warning("misuse_search_found_an_admissible_token", touchpoint=device.kind.value)
        return refusal
    return reason


async def conclude(services: Services, device: Device, match: MatchOutcome, misuse: Misuse | None,
                    hit: WatchlistHit | None, now: datetime, horizon: timedelta, started: float,
                    method: IdentifyMethod = IdentifyMethod.FACE, bags: int | None = None) -> Decision:
    # Two round trips and no transaction: read the token, apply the journey rules here, then write
    # the whole decision in one statement (db/queries/journey.py) that moves the token (or stamps a
    # lounge entry) only from the state read and not on hold, so a concurrent decision, hold or
    # revoke turns this one into state_changed.
    reason, passenger, flight_id, row = match.reason, None, None, None
    transition, lounge_entry, referral = None, False, None
    # The token the decision is about: the purpose search's, else the misuse search's (never both).
    token_id, score, margin = match.token_id, match.score, match.margin
    if token_id is None and misuse is not None:
        token_id, score, margin = misuse.token_id, misuse.score, misuse.margin
    async with services.db().acquire() as conn:
        if token_id is not None:
            row = await token_q.with_flight(conn, token_id)
            if row is None:
                reason = DecisionReason.NO_MATCH
            else:
                flight_id = row["flight_id"]
                if match.token_id is None:
                    reason = _misuse_reason(device, row, now, horizon, reason)
                elif reason == DecisionReason.MATCHED:
                    verdict = check_journey(device, token_at_touchpoint(row), now, horizon)
                    reason = verdict.reason
                    if reason == DecisionReason.MATCHED:
                        transition, lounge_entry = verdict.transition, verdict.lounge_entry
        if screening.screens(services.settings, device):
            referral = cover.touchpoint_referral(services, device, hit, reason,
                                                 token_id if row is not None else None)
            if referral is not None and reason == DecisionReason.MATCHED:
                # Hit or drawn at random, the same answer, hold and event (journey/cover.py).
                reason, transition, lounge_entry = cover.COVER_REASON, None, False
        latency_ms = (time.perf_counter() - started) * 1000
        event_id, reason, alert_id = await journey_q.record_decision(
            conn, device_id=device.id, touchpoint=device.kind.value, flight_id=flight_id,
            token_id=token_id if row is not None else None, reason=reason, transition=transition,
            lounge_entry=lounge_entry, audit_refusal=reason in _AUDITED_REFUSALS, score=score,
            margin=margin, latency_ms=latency_ms, referral=referral, channel=CHANNEL, origin=services.instance_id,
            method=method.value, bags=bags)
    if alert_id is not None:
        alerts.publish_soon(services, alert_id)
    reason = DecisionReason(reason)
    proceed = reason == DecisionReason.MATCHED
    if proceed and transition is not None and transition[0] != transition[1]:
        assert token_id is not None  # a transition comes only from the token's row
        # Other instances move it on the decision's own notification (sync/apply.py token_moved).
        await restate(services, token_id, state=transition[1])
    if proceed and TOUCHPOINTS[device.kind].shows_passenger:
        assert row is not None  # matched only after the token's row was read and checked
        passenger = PassengerView(name=f"{row['surname']}, {row['given_names']}".strip(", "),
                                  seat=row["seat"], flight=f"{row['airline']}{row['number']}")
    log.info("decision", touchpoint=device.kind.value, decision="proceed" if proceed else "refer", reason=reason,
             score=score, ms=round(latency_ms, 2), method=method.value)
    return Decision(decision="proceed" if proceed else "refer", reason=reason, event_id=event_id,
                    token_id=token_id if proceed else None, passenger=passenger, method=method)

