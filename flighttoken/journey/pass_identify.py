"""The boarding-pass fallback at a touchpoint: the pass names a token, the live face is verified
against that token's template 1:1, then the same journey rules and watchlist screening as face-only.

The pass only selects; the face decides, at ``FLIGHTTOKEN_VERIFY_THRESHOLD`` (0.35: a false-match
rate <= 1e-4 on LFW, ``make bench-verification``). A pass that names no live token is ``no_token``;
a face that does not match the token is ``face_mismatch``, recorded against that token and audited
as possible misuse. A token whose flight is not one this touchpoint serves now (another gate,
another day, outside the clearance horizon) is refused with the journey rule's reason, else
``wrong_flight`` (a gate) or ``flight_not_in_window``, and only once the face has matched: a refusal
that names a journey state goes to its owner only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from flighttoken.boardingpass import bcbp
from flighttoken.db.queries import flights as flight_q
from flighttoken.decisions.match import MatchOutcome
from flighttoken.decisions.policy import TOUCHPOINTS, Searches
from flighttoken.devices.model import Device
from flighttoken.flights.windows import windows_between
from flighttoken.journey.boarding_pass import PassToken, token_template, tokens_for_pass
from flighttoken.journey.identify import capture_refusal, conclude
from flighttoken.journey.rules import check_journey, token_at_touchpoint
from flighttoken.journey.schemas import Decision
from flighttoken.services import Services
from flighttoken.vocabulary import DecisionReason, IdentifyMethod
from flighttoken.watchlist import screening


async def identify_with_pass(services: Services, device: Device, image: bytes, pass_text: str,
                             bags: int | None = None) -> Decision:
    boarding_pass = bcbp.parse(pass_text)  # a malformed pass is a 422 before any face work
    started = time.perf_counter()
    now = datetime.now(UTC)
    horizon = timedelta(seconds=services.settings.galleries.clearance_horizon_s)
    policy = TOUCHPOINTS[device.kind]
    pool = services.db()

    async def gate_flights() -> list[uuid.UUID]:
        if policy.searches is not Searches.FLIGHTS:
            return []
        return [f.id for f in await flight_q.boarding_at_gate(pool, device.gate or "")]

    # The look-ups run while the face engine works.
    analysis, candidates, boarding = await asyncio.gather(
        services.engine.analyse(image), tokens_for_pass(pool, services.settings, boarding_pass, now), gate_flights())
    refusal = capture_refusal(policy, analysis)
    if refusal is not None:
        match = MatchOutcome(None, refusal, None, None)
    elif policy.searches is Searches.FLIGHTS and not boarding:
        match = MatchOutcome(None, DecisionReason.GATE_NOT_BOARDING, None, None)
    else:
        assert analysis.template is not None  # capture_refusal refused a capture without a face
        match = await _verify(services, device, candidates, analysis.template.vector, boarding, now, horizon)
    hit = await screening.screen(services, device, analysis)
    return await conclude(services, device, match, None, hit, now, horizon, started,
                           method=IdentifyMethod.BOARDING_PASS, bags=bags)


async def _verify(services: Services, device: Device, candidates: list[PassToken], vector: np.ndarray,
                  gate_flights: list[uuid.UUID], now: datetime, horizon: timedelta) -> MatchOutcome:
    """1:1 against each token the pass names (one, unless a booking holds two passengers of the
    same name): the best score decides."""
    best: tuple[float, PassToken] | None = None
    for candidate in candidates:
        template = await token_template(services, candidate.token["id"], candidate.flight.id)
        if template is None:
            continue
        score = float(np.dot(template, vector))
        if best is None or score > best[0]:
            best = (score, candidate)
    if best is None:
        return MatchOutcome(None, DecisionReason.NO_TOKEN, None, None)
    score, chosen = best
    token_id = chosen.token["id"]
    if score < services.settings.decisions.verify_threshold:
        return MatchOutcome(token_id, DecisionReason.FACE_MISMATCH, score, None)
    return MatchOutcome(token_id, _out_of_scope(services, device, chosen, gate_flights, now, horizon)
                        or DecisionReason.MATCHED, score, None)


def _out_of_scope(services: Services, device: Device, chosen: PassToken, gate_flights: list[uuid.UUID],
                  now: datetime, horizon: timedelta) -> DecisionReason | None:
    """Why the pass's flight is not one this touchpoint may admit for now, or None. The same scope
    as the face-only purpose search: a gate's boarding flights; else the windows within the horizon.
    Out of scope, the journey rule's own refusal (already boarded...) is the clearer reason."""
    if TOUCHPOINTS[device.kind].searches is Searches.FLIGHTS:
        if chosen.flight.id in gate_flights:
            return None
        scope_reason = DecisionReason.WRONG_FLIGHT
    else:
        windows = windows_between(now - horizon, now + horizon, services.settings.galleries.window_seconds)
        if chosen.flight.window_start in windows:
            return None
        scope_reason = DecisionReason.FLIGHT_NOT_IN_WINDOW
    rule = check_journey(device, token_at_touchpoint(chosen.token), now, horizon).reason
    return scope_reason if rule == DecisionReason.MATCHED else rule
