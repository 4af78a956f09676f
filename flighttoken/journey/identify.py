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

from flighttoken.db.queries import audit
from flighttoken.db.queries import flights as flight_q
from flighttoken.db.queries import tokens as token_q
from flighttoken.devices.model import Device, DeviceKind
from flighttoken.flights.windows import windows_between
from flighttoken.journey.rules import MatchOutcome, TokenAtTouchpoint, check_journey, decide_match
from flighttoken.journey.schemas import Decision, PassengerView
from flighttoken.services import Services
from flighttoken.watchlist.screening import screen

log = structlog.get_logger(__name__)
# Refusals that are evidence of misuse, not of a poor capture: audited beyond the journey event.
_AUDITED_REFUSALS = frozenset({"already_cleared", "already_boarded", "token_ended", "wrong_flight"})


def _threshold(services: Services, kind: DeviceKind) -> float:
    s = services.settings
    return {DeviceKind.GATE: s.gate_threshold, DeviceKind.E_CHANNEL: s.e_channel_threshold,
            DeviceKind.LOUNGE: s.lounge_threshold}[kind]


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
    # Watchlist screening (issue 5): on a hit this returns the refusal a poor capture would get.
    match = await screen(services, device, analysis, match)
    return await _conclude(services, device, match, now, horizon, started)


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
    threshold, margin = _threshold(services, device.kind), services.settings.decision_margin
    windows = windows_between(now - horizon, now + horizon, services.settings.window_seconds)
    if device.kind is DeviceKind.GATE:
        match = decide_match(await services.galleries.search_flights(gate_flights, vector), threshold, margin)
        if match.token_id is None and match.reason == "no_match":
            # Someone confidently known in the departure windows but not on this flight: tell the
            # agent it is the wrong gate rather than "unknown".
            elsewhere = decide_match(await services.galleries.search_windows(windows, vector), threshold, margin)
            if elsewhere.token_id is not None:
                return MatchOutcome(elsewhere.token_id, "wrong_flight", elsewhere.score, elsewhere.margin)
        return match
    return decide_match(await services.galleries.search_windows(windows, vector), threshold, margin)


async def _conclude(services: Services, device: Device, match: MatchOutcome, now: datetime,
                    horizon: timedelta, started: float) -> Decision:
    pool = services.db()
    reason, passenger, flight_id = match.reason, None, None
    proceed = False
    async with pool.acquire() as conn, conn.transaction():
        if match.token_id is not None:
            row = await token_q.with_flight(conn, match.token_id)
            if row is None:
                reason = "no_match"
            else:
                flight_id = row["flight_id"]
                if reason == "matched":
                    verdict = check_journey(device, _token_view(row), now, horizon)
                    reason = verdict.reason
                    if verdict.reason == "matched" and verdict.transition:
                        expected, new_state = verdict.transition
                        if not await token_q.advance(conn, match.token_id, expected=expected, new_state=new_state):
                            reason = "state_changed"  # a concurrent decision got there first
                    if reason == "matched" and device.kind is DeviceKind.LOUNGE:
                        await token_q.mark_lounge_entry(conn, match.token_id)
                proceed = reason == "matched"
                if proceed and device.kind is DeviceKind.GATE:
                    passenger = PassengerView(name=f"{row['surname']}, {row['given_names']}".strip(", "),
                                              seat=row["seat"], flight=f"{row['airline']}{row['number']}")
                if reason in _AUDITED_REFUSALS:
                    await audit.record(conn, actor=f"device:{device.id}", action=f"{device.kind.value}.identify",
                                       outcome="refused", flight_id=flight_id, token_id=match.token_id,
                                       detail={"reason": reason})
        latency_ms = (time.perf_counter() - started) * 1000
        event_id = await token_q.insert_journey_event(
            conn, device_id=device.id, touchpoint=device.kind.value, flight_id=flight_id,
            token_id=match.token_id if proceed or reason in _AUDITED_REFUSALS else None,
            decision="proceed" if proceed else "refer", reason=reason, score=match.score, margin=match.margin,
            latency_ms=latency_ms)
    log.info("decision", touchpoint=device.kind.value, decision="proceed" if proceed else "refer", reason=reason,
             score=match.score, ms=round(latency_ms, 2))
    return Decision(decision="proceed" if proceed else "refer", reason=reason, event_id=event_id,
                    token_id=match.token_id if proceed else None, passenger=passenger)


def _token_view(row) -> TokenAtTouchpoint:
    return TokenAtTouchpoint(state=row["state"], on_hold=row["on_hold"], lounge_eligible=row["lounge_eligible"],
                             international=row["international"], flight_state=row["flight_state"],
                             flight_gate=row["gate"], scheduled_departure=row["scheduled_departure"])
