"""Touchpoint rules and the match decision, as pure functions.

A doubtful match never opens a gate: ``decide_match`` proceeds only when the best score reaches
the touchpoint's threshold AND beats the runner-up by the margin. ``check_journey`` then applies
the journey order (clear immigration, then lounge, then board) to the matched token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flighttoken.devices.model import Device, DeviceKind
from flighttoken.galleries.index import Candidate


@dataclass(frozen=True, slots=True)
class MatchOutcome:
    token_id: uuid.UUID | None
    reason: str
    score: float | None
    margin: float | None


def decide_match(candidates: list[Candidate], threshold: float, margin: float) -> MatchOutcome:
    if not candidates:
        return MatchOutcome(None, "no_match", None, None)
    top = candidates[0]
    gap = top.score - candidates[1].score if len(candidates) > 1 else None
    if top.score < threshold:
        return MatchOutcome(None, "no_match", top.score, gap)
    if gap is not None and gap < margin:
        return MatchOutcome(None, "ambiguous_match", top.score, gap)
    return MatchOutcome(uuid.UUID(top.id), "matched", top.score, gap)


@dataclass(frozen=True, slots=True)
class TokenAtTouchpoint:
    state: str
    on_hold: bool
    lounge_eligible: bool
    international: bool
    flight_state: str
    flight_gate: str | None
    scheduled_departure: datetime


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str
    """'matched' to proceed; otherwise the refer reason."""
    transition: tuple[str, str] | None = None
    """(expected state, new state) to apply atomically when proceeding."""


def check_journey(device: Device, token: TokenAtTouchpoint, now: datetime, horizon: timedelta) -> Verdict:
    if token.state in ("revoked", "expired"):
        return Verdict("token_ended")
    if token.on_hold:
        # The same words for every hold: a gate or lounge must not learn why.
        return Verdict("see_officer")
    if token.flight_state not in ("scheduled", "boarding"):
        return Verdict("flight_closed")
    if device.kind is DeviceKind.E_CHANNEL:
        return _e_channel(token, now, horizon)
    if device.kind is DeviceKind.LOUNGE:
        return _lounge(token, now, horizon)
    if device.kind is DeviceKind.GATE:
        return _gate(device, token)
    return Verdict("not_a_touchpoint")


def _e_channel(token: TokenAtTouchpoint, now: datetime, horizon: timedelta) -> Verdict:
    if not token.international:
        return Verdict("not_international")
    if token.state == "immigration_cleared":
        return Verdict("already_cleared")
    if token.state == "boarded":
        return Verdict("already_boarded")
    if token.scheduled_departure - now > horizon:
        return Verdict("flight_not_in_window")
    return Verdict("matched", ("enrolled", "immigration_cleared"))


def _lounge(token: TokenAtTouchpoint, now: datetime, horizon: timedelta) -> Verdict:
    if token.state == "boarded":
        return Verdict("already_boarded")
    if token.international and token.state != "immigration_cleared":
        return Verdict("immigration_not_cleared")
    if not token.lounge_eligible:
        return Verdict("not_lounge_eligible")
    if token.scheduled_departure - now > horizon:
        return Verdict("flight_not_in_window")
    return Verdict("matched")


def _gate(device: Device, token: TokenAtTouchpoint) -> Verdict:
    if token.flight_gate != device.gate or token.flight_state != "boarding":
        return Verdict("wrong_flight")
    if token.state == "boarded":
        return Verdict("already_boarded")
    if token.international and token.state != "immigration_cleared":
        return Verdict("immigration_not_cleared")
    return Verdict("matched", (token.state, "boarded"))
