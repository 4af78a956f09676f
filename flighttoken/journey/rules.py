"""Touchpoint rules and the match decision, as pure functions.

A doubtful match never opens a gate: ``decide_match`` proceeds only when the best score reaches
the touchpoint's threshold AND beats the runner-up by the margin. The threshold grows with the
gallery searched (``threshold_for``): the best of N impostor scores rises with N, so one threshold
cannot suit a 420-face flight and a 42,000-face departure window. ``check_journey`` then applies the
journey order (clear immigration, then lounge, then board) to the matched token.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flighttoken.devices.model import Device, DeviceKind
from flighttoken.galleries.index import Candidate
from flighttoken.settings import Settings


@dataclass(frozen=True, slots=True)
class MatchOutcome:
    token_id: uuid.UUID | None
    reason: str
    score: float | None
    margin: float | None


def impostor_rate(score: float, score_1e6: float, decade: float) -> float:
    """Per-comparison impostor tail p(t): the share of different-person pairs scoring >= ``score``."""
    return 10.0 ** min(0.0, -6.0 - (score - score_1e6) / decade)  # a share: at most 1


def predicted_fpir(score: float, gallery_size: int, score_1e6: float, decade: float) -> float:
    """FPIR of a ``gallery_size``-face search at threshold ``score``: 1 - (1 - p)^N (independent pairs)."""
    p = impostor_rate(score, score_1e6, decade)
    return -math.expm1(max(gallery_size, 1) * math.log1p(-p)) if p < 1.0 else 1.0


def size_threshold(gallery_size: int, target_fpir: float, score_1e6: float, decade: float) -> float:
    """Lowest score whose predicted FPIR in a ``gallery_size``-face search is ``target_fpir``."""
    p = -math.expm1(math.log1p(-target_fpir) / max(gallery_size, 1))  # per-comparison budget
    return score_1e6 - decade * (6.0 + math.log10(p))


def threshold_for(settings: Settings, touchpoint: DeviceKind, gallery_size: int) -> float:
    """The score to proceed at ``touchpoint`` after searching ``gallery_size`` faces: the gallery-size
    threshold for the touchpoint's target FPIR, never below the touchpoint's configured threshold."""
    s = settings
    floor, fpir = {DeviceKind.GATE: (s.decisions.gate_threshold, s.decisions.gate_target_fpir),
                   DeviceKind.E_CHANNEL: (s.decisions.e_channel_threshold, s.decisions.e_channel_target_fpir),
                   DeviceKind.LOUNGE: (s.decisions.lounge_threshold, s.decisions.lounge_target_fpir)}[touchpoint]
    return max(floor, size_threshold(gallery_size, fpir, s.decisions.impostor_tail_score_1e6,
                                     s.decisions.impostor_tail_decade))


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
    """(expected state, new state) to apply atomically when proceeding; the same state twice (a
    lounge entry) moves nothing but still proceeds only if the token is in it, and not on hold."""


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
    # Checked again by the write: a hold or revoke landing after this read must not admit.
    return Verdict("matched", (token.state, token.state))


def _gate(device: Device, token: TokenAtTouchpoint) -> Verdict:
    if token.flight_gate != device.gate or token.flight_state != "boarding":
        return Verdict("wrong_flight")
    if token.state == "boarded":
        return Verdict("already_boarded")
    if token.international and token.state != "immigration_cleared":
        return Verdict("immigration_not_cleared")
    return Verdict("matched", (token.state, "boarded"))
