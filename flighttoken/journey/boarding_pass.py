"""What a boarding pass names: the flight of each leg (carrier, number, the pass's date, local to
the airport) and, on it, the live tokens under the pass's PNR whose names are the pass's name.

Shared by the 1:1 fallback at touchpoints (pass_identify.py) and any staff or enrolment flow that
starts from a pass. No face is involved here: a pass only *selects* a token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg
import numpy as np

from flighttoken.boardingpass.bcbp import BoardingPass, Leg
from flighttoken.boardingpass.dates import flight_date
from flighttoken.boardingpass.names import names_match
from flighttoken.db.connection import Executor
from flighttoken.db.queries import flights as flight_q
from flighttoken.db.queries import tokens as token_q
from flighttoken.flights.days import calendar_day
from flighttoken.flights.model import Flight
from flighttoken.privacy.vault import TemplateVault
from flighttoken.services import Services
from flighttoken.settings import Settings


@dataclass(frozen=True, slots=True)
class PassFlight:
    leg: Leg
    date: date
    """The leg's date of flight, read against today at the airport (dates.py ``flight_date``)."""
    flight: Flight


@dataclass(frozen=True, slots=True)
class PassToken:
    leg: Leg
    flight: Flight
    token: asyncpg.Record
    """The token and its flight, as ``db/queries/tokens.py`` ``with_flight`` returns it."""


async def flights_for_pass(conn: Executor, settings: Settings, boarding_pass: BoardingPass,
                           now: datetime) -> list[PassFlight]:
    """Each leg's flight on the pass's date (local to the airport, ``FLIGHTTOKEN_OPS_TIMEZONE``):
    a leg whose carrier and number fly from here that day to the leg's destination. Legs flown
    elsewhere find nothing, and neither does a pass whose destination is not the flight's (a
    misprinted or altered pass names no flight of ours)."""
    tz = settings.operations.ops_timezone
    today = now.astimezone(ZoneInfo(tz)).date()
    found = []
    for leg in boarding_pass.legs:
        try:
            day = flight_date(leg.julian_date, today)
        except ValueError:
            continue  # day 366 far from a leap year: no flight that day
        start, end = calendar_day(tz, day)
        for flight in await flight_q.named_departing(conn, leg.carrier, leg.flight, start, end):
            if flight.destination == leg.to_airport:
                found.append(PassFlight(leg, day, flight))
    return found


async def tokens_for_pass(conn: Executor, settings: Settings, boarding_pass: BoardingPass,
                          now: datetime) -> list[PassToken]:
    """The live tokens the pass names: on a leg's flight that day, under the leg's PNR, with the
    pass's name (names.py ``names_match``). Usually one; empty means ``no_token``."""
    found = []
    for pf in await flights_for_pass(conn, settings, boarding_pass, now):
        for row in await token_q.live_on_booking(conn, pf.flight.id, pf.leg.pnr):
            if names_match(boarding_pass.passenger_name, row["surname"], row["given_names"]):
                found.append(PassToken(pf.leg, pf.flight, row))
    return found


async def token_template(services: Services, token_id: uuid.UUID, flight_id: uuid.UUID) -> np.ndarray | None:
    """The token's template for a 1:1 check: from the in-memory flight gallery, else opened from
    PostgreSQL with the flight's data key. None when there is none made by the running model (or
    the flight's data has been purged)."""
    vector = services.galleries.template(token_id)
    if vector is not None:
        return vector
    row = await token_q.template_of(services.db(), token_id)
    if row is None or row["model_id"] != services.engine.model_id:
        return None
    dek = await services.vault.flight_key(flight_id)
    if dek is None:
        return None
    return TemplateVault.open_template(dek, token_id, row["model_id"], row["sealed"])
