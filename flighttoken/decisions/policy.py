"""The touchpoint policy table: for each touchpoint kind, its threshold floor, its target FPIR, the
gallery it searches, who belongs in its purpose gallery and what else its identify flow does. Adding
a touchpoint kind is one entry here plus its journey rule (journey/rules.py ``JOURNEY_RULES``).

The enrolment policy table (``ENROLMENT_POINTS``): which device kinds may enrol a passenger, and
what each must send beyond the kiosk's request."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

from flighttoken.settings import Settings
from flighttoken.vocabulary import DeviceKind, TokenState


class Searches(enum.StrEnum):
    FLIGHTS = "flights"
    """The flights boarding at the device's gate (a few hundred faces); someone found instead in the
    departure windows is told ``wrong_flight``, and a gate with no flight boarding ``gate_not_boarding``."""
    WINDOWS = "windows"
    """The departure windows within the clearance horizon (up to tens of thousands of faces)."""


@dataclass(frozen=True, slots=True)
class Standing:
    """What decides which purpose galleries hold a live token (galleries/registry.py): nothing else
    (not a hold, not the clock), so every instance places a token the same way from these three."""

    state: TokenState
    international: bool
    lounge_eligible: bool


def _uncleared_international(t: Standing) -> bool:
    return t.international and t.state == TokenState.ENROLLED


def _lounge_guest(t: Standing) -> bool:
    past_immigration = t.state == TokenState.IMMIGRATION_CLEARED or (not t.international
                                                                     and t.state == TokenState.ENROLLED)
    return t.lounge_eligible and past_immigration


def _not_yet_cleared(t: Standing) -> bool:
    # Security comes before the e-channel: the e-channel's people, and domestic ones (who never clear).
    return t.state == TokenState.ENROLLED


def _not_boarded(t: Standing) -> bool:
    # Enrolled international passengers stay in: the agent is told immigration_not_cleared at the
    # flight's own (small) size rather than a weaker answer from the stricter misuse search.
    return t.state in (TokenState.ENROLLED, TokenState.IMMIGRATION_CLEARED)


@dataclass(frozen=True, slots=True)
class TouchpointPolicy:
    threshold: Callable[[Settings], float]
    """Settings → the lowest score to proceed, whatever the gallery size (``FLIGHTTOKEN_*_THRESHOLD``)."""
    target_fpir: Callable[[Settings], float]
    """Settings → the false-positive identification rate the gallery-size threshold aims at."""
    searches: Searches
    admits: Callable[[Standing], bool]
    """Whether a token belongs in this touchpoint's purpose gallery: the people it may admit now (a
    journey rule may still refuse them: a hold, a flight outside the horizon). Everyone else is
    found only by the audit-only misuse search, which never proceeds (journey/identify.py)."""
    refuses_tailgating: bool = False
    """Refer a capture with a second face close behind (a one-person lane)."""
    shows_passenger: bool = False
    """Proceed carries the passenger's name, seat and flight (a boarding gate's agent screen)."""
    reports_bags: bool = False
    """The device reports the bags it takes (``POST /v1/identify?bags=N``); no other kind may."""


def _decision_settings(kind: str) -> tuple[Callable[[Settings], float], Callable[[Settings], float]]:
    """The ``FLIGHTTOKEN_<KIND>_THRESHOLD`` floor and ``_TARGET_FPIR`` of a touchpoint kind."""
    return attrgetter(f"decisions.{kind}_threshold"), attrgetter(f"decisions.{kind}_target_fpir")


TOUCHPOINTS: dict[DeviceKind, TouchpointPolicy] = {
    DeviceKind.E_CHANNEL: TouchpointPolicy(*_decision_settings("e_channel"), Searches.WINDOWS, _uncleared_international,
                                           refuses_tailgating=True),
    DeviceKind.LOUNGE: TouchpointPolicy(*_decision_settings("lounge"), Searches.WINDOWS, _lounge_guest),
    DeviceKind.GATE: TouchpointPolicy(*_decision_settings("gate"), Searches.FLIGHTS, _not_boarded,
                                      shows_passenger=True),
    # Bag drop never needs immigration: everyone not yet boarded in the windows leaving soon. Families
    # stand together at a bag drop, and it opens nothing: no tailgating refusal.
    DeviceKind.BAG_DROP: TouchpointPolicy(*_decision_settings("bag_drop"), Searches.WINDOWS, _not_boarded,
                                          reports_bags=True),
    DeviceKind.E_SECURITY_GATE: TouchpointPolicy(*_decision_settings("e_security_gate"), Searches.WINDOWS,
                                                 _not_yet_cleared, refuses_tailgating=True),
}


@dataclass(frozen=True, slots=True)
class EnrolmentPolicy:
    """What a device kind must send to enrol (``POST /v1/enrolments``), beyond the kiosk's request.
    Every kind enrols under the same rules (journey/enrolment.py): consent first, chip 1:1 when a
    chip photo is sent, the duplicate-face check, the re-enrolment rules."""

    requires_chip_photo: bool = False
    """The document chip's face (DG2) is mandatory: no staffed desk saw the document (late enrolment)."""
    requires_boarding_pass: bool = False
    """The booking comes from the passenger's boarding pass (``boarding_pass``, IATA BCBP: flight,
    booking reference, seat; its name must be the document's), not from the airline's record
    (``booking``): a device past check-in has no booking record to send (journey/enrolment_booking.py)."""


ENROLMENT_POINTS: dict[DeviceKind, EnrolmentPolicy] = {
    DeviceKind.KIOSK: EnrolmentPolicy(),
    # Late enrolment (tokens.enrolled_by records the kind; a flight's progress counts late_enrolled).
    DeviceKind.E_SECURITY_GATE: EnrolmentPolicy(requires_chip_photo=True, requires_boarding_pass=True),
}
