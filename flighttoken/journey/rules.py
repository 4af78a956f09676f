"""The journey rules, as pure functions: ``check_journey`` applies the journey order (security,
then immigration, then lounge, then board; bag drop any time before boarding) to the token a
touchpoint matched. Each touchpoint kind of the policy table (decisions/policy.py) has its rule in
``JOURNEY_RULES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flighttoken.devices.model import Device
from flighttoken.vocabulary import ENDED_TOKEN_STATES, DecisionReason, DeviceKind, FlightState, TokenState


@dataclass(frozen=True, slots=True)
class TokenAtTouchpoint:
    state: TokenState
    on_hold: bool
    lounge_eligible: bool
    international: bool
    flight_state: FlightState
    flight_gate: str | None
    scheduled_departure: datetime


def token_at_touchpoint(row) -> TokenAtTouchpoint:
    """The rules' view of a token-and-flight row (db/queries/tokens.py ``with_flight``)."""
    return TokenAtTouchpoint(state=TokenState(row["state"]), on_hold=row["on_hold"],
                             lounge_eligible=row["lounge_eligible"], international=row["international"],
                             flight_state=FlightState(row["flight_state"]),
                             flight_gate=row["gate"], scheduled_departure=row["scheduled_departure"])


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: DecisionReason
    """'matched' to proceed; otherwise the refer reason."""
    transition: tuple[TokenState, TokenState] | None = None
    """(expected state, new state) to apply atomically when proceeding; the same state twice (a
    lounge entry, a bag drop, a security gate) moves nothing but still proceeds only if the token is
    in it, and not on hold."""
    lounge_entry: bool = False
    """Proceeding stamps the token's lounge entry."""


def check_journey(device: Device, token: TokenAtTouchpoint, now: datetime, horizon: timedelta) -> Verdict:
    if token.state in ENDED_TOKEN_STATES:
        return Verdict(DecisionReason.TOKEN_ENDED)
    if token.on_hold:
        # The same words for every hold: a gate or lounge must not learn why.
        return Verdict(DecisionReason.SEE_OFFICER)
    if token.flight_state not in (FlightState.SCHEDULED, FlightState.BOARDING):
        return Verdict(DecisionReason.FLIGHT_CLOSED)
    rule = JOURNEY_RULES.get(device.kind)
    if rule is None:
        return Verdict(DecisionReason.NOT_A_TOUCHPOINT)
    return rule(device, token, now, horizon)


def _e_channel(device: Device, token: TokenAtTouchpoint, now: datetime, horizon: timedelta) -> Verdict:
    if not token.international:
        return Verdict(DecisionReason.NOT_INTERNATIONAL)
    if token.state == TokenState.IMMIGRATION_CLEARED:
        return Verdict(DecisionReason.ALREADY_CLEARED)
    if token.state == TokenState.BOARDED:
        return Verdict(DecisionReason.ALREADY_BOARDED)
    if token.scheduled_departure - now > horizon:
        return Verdict(DecisionReason.FLIGHT_NOT_IN_WINDOW)
    return Verdict(DecisionReason.MATCHED, (TokenState.ENROLLED, TokenState.IMMIGRATION_CLEARED))


def _lounge(device: Device, token: TokenAtTouchpoint, now: datetime, horizon: timedelta) -> Verdict:
    if token.state == TokenState.BOARDED:
        return Verdict(DecisionReason.ALREADY_BOARDED)
    if token.international and token.state != TokenState.IMMIGRATION_CLEARED:
        return Verdict(DecisionReason.IMMIGRATION_NOT_CLEARED)
    if not token.lounge_eligible:
        return Verdict(DecisionReason.NOT_LOUNGE_ELIGIBLE)
    if token.scheduled_departure - now > horizon:
        return Verdict(DecisionReason.FLIGHT_NOT_IN_WINDOW)
    # Checked again by the write: a hold or revoke landing after this read must not admit.
    return Verdict(DecisionReason.MATCHED, (token.state, token.state), lounge_entry=True)


def _gate(device: Device, token: TokenAtTouchpoint, now: datetime, horizon: timedelta) -> Verdict:
    if token.flight_gate != device.gate or token.flight_state != FlightState.BOARDING:
        return Verdict(DecisionReason.WRONG_FLIGHT)
    if token.state == TokenState.BOARDED:
        return Verdict(DecisionReason.ALREADY_BOARDED)
    if token.international and token.state != TokenState.IMMIGRATION_CLEARED:
        return Verdict(DecisionReason.IMMIGRATION_NOT_CLEARED)
    return Verdict(DecisionReason.MATCHED, (token.state, TokenState.BOARDED))


def _bag_drop(device: Device, token: TokenAtTouchpoint, now: datetime, horizon: timedelta) -> Verdict:
    # Never immigration: bags are dropped before the e-channel, or after it by a late passenger.
    if token.state == TokenState.BOARDED:
        return Verdict(DecisionReason.ALREADY_BOARDED)
    if token.scheduled_departure - now > horizon:
        return Verdict(DecisionReason.FLIGHT_NOT_IN_WINDOW)
    return Verdict(DecisionReason.MATCHED, (token.state, token.state))


def _e_security_gate(device: Device, token: TokenAtTouchpoint, now: datetime, horizon: timedelta) -> Verdict:
    # Airside entry, before the e-channel: someone past immigration is already airside.
    if token.state == TokenState.IMMIGRATION_CLEARED:
        return Verdict(DecisionReason.ALREADY_CLEARED)
    if token.state == TokenState.BOARDED:
        return Verdict(DecisionReason.ALREADY_BOARDED)
    if token.scheduled_departure - now > horizon:
        return Verdict(DecisionReason.FLIGHT_NOT_IN_WINDOW)
    return Verdict(DecisionReason.MATCHED, (TokenState.ENROLLED, TokenState.ENROLLED))


Rule = Callable[[Device, TokenAtTouchpoint, datetime, timedelta], Verdict]
# One per touchpoint kind of decisions/policy.py TOUCHPOINTS (tests/journey/test_vocabulary.py checks).
JOURNEY_RULES: dict[DeviceKind, Rule] = {
    DeviceKind.E_CHANNEL: _e_channel,
    DeviceKind.LOUNGE: _lounge,
    DeviceKind.GATE: _gate,
    DeviceKind.BAG_DROP: _bag_drop,
    DeviceKind.E_SECURITY_GATE: _e_security_gate,
}
