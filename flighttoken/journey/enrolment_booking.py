"""Where an enrolment's booking comes from: the airline's booking record a kiosk sends (``booking``),
or, for a late enrolment at an e-Security Gate, the passenger's boarding pass (``boarding_pass``). The
enrolment policy table says which (decisions/policy.py ``EnrolmentPolicy.requires_boarding_pass``);
the other is refused, so a request never carries two versions of the booking.

From a pass (IATA BCBP): the flight is a leg's carrier and number on the pass's date, local to the
airport (journey/boarding_pass.py ``flights_for_pass``), and must be today's or depart within the
clearance horizon (a late-evening passenger of a flight after midnight); the booking reference and
seat are the leg's; the pass's name must be the document's. Nothing here writes, but the audit event
of a pass naming someone else (possible misuse). A pass says nothing of lounge access: a token
enrolled from one is not lounge-eligible.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flighttoken.boardingpass import bcbp
from flighttoken.boardingpass.bcbp import BoardingPass, Leg
from flighttoken.boardingpass.errors import InvalidBoardingPass
from flighttoken.boardingpass.names import names_match
from flighttoken.db.connection import Executor
from flighttoken.db.queries import audit
from flighttoken.db.queries import flights as flight_q
from flighttoken.decisions.policy import ENROLMENT_POINTS
from flighttoken.devices.model import Device
from flighttoken.errors import NotFound, Unprocessable
from flighttoken.flights.days import calendar_day
from flighttoken.flights.model import Flight
from flighttoken.journey.boarding_pass import PassFlight, flights_for_pass
from flighttoken.journey.schemas import Booking, EnrolmentRequest
from flighttoken.services import Services

_BOOKING_REFERENCE = re.compile(r"[A-Z0-9]{5,8}")  # fieldtypes.BookingReference
_SEAT = re.compile(r"0*([0-9]{1,3}[A-K])")  # BCBP prints 042A; a booking holds 42A


async def booking_of(services: Services, device: Device, req: EnrolmentRequest,
                     now: datetime) -> tuple[Booking, Flight]:
    """The request's booking and its flight, or a 4xx saying what is missing or wrong."""
    kind = device.kind.value
    if ENROLMENT_POINTS[device.kind].requires_boarding_pass:
        if req.boarding_pass is None:
            raise Unprocessable(f"a {kind} enrols from the passenger's boarding pass: send boarding_pass",
                                code="boarding_pass_required")
        if req.booking is not None:
            raise Unprocessable(f"a {kind} takes the booking from the boarding pass: send no booking",
                                code="booking_not_accepted")
        return await _from_pass(services, device, req, req.boarding_pass, now)
    if req.boarding_pass is not None:
        raise Unprocessable(f"a {kind} enrols from the airline's booking: send no boarding_pass",
                            code="boarding_pass_not_accepted")
    if req.booking is None:
        raise Unprocessable(f"a {kind} enrols from the airline's booking: send booking", code="booking_required")
    flight = await flight_q.by_id(services.db(), req.booking.flight_id)
    if flight is None:
        raise NotFound("no such flight", code="flight_not_found")
    return req.booking, flight


async def _from_pass(services: Services, device: Device, req: EnrolmentRequest, text: str,
                     now: datetime) -> tuple[Booking, Flight]:
    boarding_pass = bcbp.parse(text)  # malformed: 422 invalid_boarding_pass naming the item
    settings, pool = services.settings, services.db()
    today = now.astimezone(ZoneInfo(settings.operations.ops_timezone)).date()
    horizon = timedelta(seconds=settings.galleries.clearance_horizon_s)
    found = await flights_for_pass(pool, settings, boarding_pass, now)
    current = [pf for pf in found if pf.date == today or pf.flight.scheduled_departure - now <= horizon]
    if not current:
        legs = ", ".join(f"{leg.carrier}{leg.flight} day {leg.julian_date:03d}" for leg in boarding_pass.legs)
        if found or await _flies_today(pool, settings.operations.ops_timezone, today, boarding_pass):
            raise Unprocessable(f"the boarding pass ({legs}) is for another date, not a flight departing now",
                                code="boarding_pass_other_date")
        raise Unprocessable(f"no flight on the boarding pass ({legs}) departs from here on its date",
                            code="boarding_pass_unknown_flight")
    if len({pf.flight.id for pf in current}) > 1:
        raise Unprocessable("the boarding pass names more than one flight departing now",
                            code="boarding_pass_ambiguous")
    chosen: PassFlight = current[0]
    if not names_match(boarding_pass.passenger_name, req.document.surname, req.document.given_names):
        await audit.record(pool, actor=f"device:{device.id}", action="token.enrol", outcome="refused",
                           flight_id=chosen.flight.id, detail={"reason": "boarding_pass_name_mismatch"})
        raise Unprocessable("the boarding pass names someone other than the travel document's holder",
                            code="boarding_pass_name_mismatch")
    return Booking(flight_id=chosen.flight.id, booking_reference=_booking_reference(chosen.leg),
                   seat=_seat(chosen.leg), lounge_eligible=False), chosen.flight


async def _flies_today(conn: Executor, tz: str, today, boarding_pass: BoardingPass) -> bool:
    """Whether a leg's flight departs from here today: then a pass that found none is for another date."""
    start, end = calendar_day(tz, today)
    for leg in boarding_pass.legs:
        if await flight_q.named_departing(conn, leg.carrier, leg.flight, start, end):
            return True
    return False


def _booking_reference(leg: Leg) -> str:
    if not _BOOKING_REFERENCE.fullmatch(leg.pnr):
        raise InvalidBoardingPass("pnr", f"{leg.pnr!r} is not a booking reference (5 to 8 letters and digits)")
    return leg.pnr


def _seat(leg: Leg) -> str | None:
    """The leg's seat as a booking holds it; None for no seat (blank, ``INF``, a gate-assigned seat)."""
    match = _SEAT.fullmatch(leg.seat)
    return match.group(1) if match else None
