"""Face-only decisions at e-channels, lounges and boarding gates: "who is this?" → proceed or refer.

Each touchpoint searches only the small gallery it is entitled to: a gate its boarding flights,
an e-channel or lounge the departure windows about to leave. Every decision, proceed or refer, is
stored as a journey event (never the image or the template).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import structlog

from flighttoken.db.queries import flights as flight_q
from flighttoken.db.queries import journey as journey_q
from flighttoken.db.queries import tokens as token_q
from flighttoken.devices.model import Device, DeviceKind
from flighttoken.flights.windows import windows_between
from flighttoken.journey.rules import MatchOutcome, TokenAtTouchpoint, check_journey, decide_match, threshold_for
from flighttoken.journey.schemas import Decision, PassengerView
from flighttoken.services import Services
from flighttoken.sync.events import CHANNEL
from flighttoken.watchlist import alerts, screening
from flighttoken.watchlist.gallery import WatchlistHit

log = structlog.get_logger(__name__)
# Refusals that are evidence of misuse, not of a poor capture: audited beyond the journey event.
_AUDITED_REFUSALS = frozenset({"already_cleared", "already_boarded", "token_ended", "wrong_flight"})


async def identify(services: Services, device: Device, image: bytes) -> Decision:
    started = time.perf_counter()
    now = datetime.now(UTC)
    horizon = timedelta(seconds=services.settings.clearance_horizon_s)
    gate_flights: list[uuid.UUID] = []
    if device.kind is DeviceKind.GATE:
        # The gate's boarding flights are read while the face engine works: a round trip off the path.
        analysis, boarding = await asyncio.gather(services.engine.analyse(image),
                                                  flight_q.boarding_at_gate(services.db(), device.gate or ""))
        gate_flights = [f.id for f in boarding]
    else:
        analysis = await services.engine.analyse(image)
    refusal = _capture_refusal(device, analysis)
    match = MatchOutcome(None, refusal or "", None, None)
    if refusal is None:
        if device.kind is DeviceKind.GATE and not gate_flights:
            match = MatchOutcome(None, "gate_not_boarding", None, None)
        else:
            match = await _match(services, device, analysis.template.vector, gate_flights, now, horizon)
    # Watchlist screening (issues 5, 17): searched here, decided and recorded with the decision.
    hit = await screening.search(services, device, analysis)
    return await _conclude(services, device, match, hit, now, horizon, started)


def _capture_refusal(device: Device, analysis) -> str | None:
    if analysis.template is None:
        return "no_face"
    if analysis.quality_failures:
        return analysis.quality_failures[0]
    if device.kind is DeviceKind.E_CHANNEL and analysis.tailgating:
        return "tailgating"
    return None


async def _match(services: Services, device: Device, vector, gate_flights: list[uuid.UUID], now: datetime,
                 horizon: timedelta) -> MatchOutcome:
    s, galleries = services.settings, services.galleries
    margin = s.decision_margin
    windows = windows_between(now - horizon, now + horizon, s.window_seconds)
    # The threshold follows the number of faces actually searched (issue 8: FPIR grows with N).
    window_faces = sum(galleries.window_size(w) for w in windows)
    if device.kind is DeviceKind.GATE:
        flight_faces = sum(galleries.flight_size(f) for f in gate_flights)
        threshold = threshold_for(s, device.kind, flight_faces)
        match = decide_match(await galleries.search_flights(gate_flights, vector), threshold, margin)
        if match.token_id is None and match.reason == "no_match":
            # Someone confidently known in the departure windows but not on this flight: tell the
            # agent it is the wrong gate rather than "unknown".
            elsewhere = decide_match(await galleries.search_windows(windows, vector),
                                     threshold_for(s, device.kind, window_faces), margin)
            if elsewhere.token_id is not None:
                return MatchOutcome(elsewhere.token_id, "wrong_flight", elsewhere.score, elsewhere.margin)
        return match
    return decide_match(await galleries.search_windows(windows, vector),
                        threshold_for(s, device.kind, window_faces), margin)


async def _conclude(services: Services, device: Device, match: MatchOutcome, hit: WatchlistHit | None,
                    now: datetime, horizon: timedelta, started: float) -> Decision:
    # Two round trips and no transaction: read the token, apply the journey rules here, then write
    # the whole decision in one statement (db/queries/journey.py) that moves the token (or stamps a
    # lounge entry) only from the state read and not on hold, so a concurrent decision, hold or
    # revoke turns this one into state_changed.
    reason, passenger, flight_id, row = match.reason, None, None, None
    transition, lounge_entry, referral = None, False, None
    async with services.db().acquire() as conn:
        if match.token_id is not None:
            row = await token_q.with_flight(conn, match.token_id)
            if row is None:
                reason = "no_match"
            else:
                flight_id = row["flight_id"]
                if reason == "matched":
                    verdict = check_journey(device, _token_view(row), now, horizon)
                    reason = verdict.reason
                    if reason == "matched":
                        transition = verdict.transition
                        lounge_entry = device.kind is DeviceKind.LOUNGE
        if screening.screens(services.settings, device):
            referral = _referral(services, device, hit, reason, match.token_id if row is not None else None)
            if referral is not None and reason == "matched":
                # Hit or drawn at random, the same answer, hold and event (watchlist/screening.py).
                reason, transition, lounge_entry = screening.COVER_REASON, None, False
        latency_ms = (time.perf_counter() - started) * 1000
        event_id, reason, alert_id = await journey_q.record_decision(
            conn, device_id=device.id, touchpoint=device.kind.value, flight_id=flight_id,
            token_id=match.token_id if row is not None else None, reason=reason, transition=transition,
            lounge_entry=lounge_entry, audit_refusal=reason in _AUDITED_REFUSALS, score=match.score,
            margin=match.margin, latency_ms=latency_ms, referral=referral)
    if alert_id is not None:
        alerts.publish_soon(services, alert_id)
    proceed = reason == "matched"
    if proceed and device.kind is DeviceKind.GATE:
        assert row is not None  # only a token that was read can be matched
        passenger = PassengerView(name=f"{row['surname']}, {row['given_names']}".strip(", "),
                                  seat=row["seat"], flight=f"{row['airline']}{row['number']}")
    log.info("decision", touchpoint=device.kind.value, decision="proceed" if proceed else "refer", reason=reason,
             score=match.score, ms=round(latency_ms, 2))
    return Decision(decision="proceed" if proceed else "refer", reason=reason, event_id=event_id,
                    token_id=match.token_id if proceed else None, passenger=passenger)


def _referral(services: Services, device: Device, hit: WatchlistHit | None, reason: str,
              token_id: uuid.UUID | None) -> journey_q.Referral | None:
    """The officer referral this screened decision records, if any. The draw is made for every
    screened decision, so each does the same work."""
    kind = screening.referral(hit, reason == "matched", screening.drawn(services.settings.secondary_referral_share))
    if kind is None:
        return None
    return journey_q.Referral(kind=kind, subject_id=hit.subject_id if hit else None, score=hit.score if hit else None,
                              hold_token_id=token_id, terminal=device.terminal, gate=device.gate,
                              lounge_id=device.lounge_id, channel=CHANNEL, origin=services.instance_id)


def _token_view(row) -> TokenAtTouchpoint:
    return TokenAtTouchpoint(state=row["state"], on_hold=row["on_hold"], lounge_eligible=row["lounge_eligible"],
                             international=row["international"], flight_state=row["flight_state"],
                             flight_gate=row["gate"], scheduled_departure=row["scheduled_departure"])
