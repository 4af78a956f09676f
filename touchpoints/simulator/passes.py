"""Boarding passes as an airline prints them: one-leg IATA BCBP (Resolution 792, format M1) text
made from a simulated booking, for the 1:1 fallback and late enrolment. Mandatory items only, with
the layout the service's parser reads (flighttoken/boardingpass/bcbp.py)."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from zoneinfo import ZoneInfo

NAME_WIDTH = 20
ORIGIN = "HKG"


def _letters(text: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().upper()
    return " ".join(re.sub(r"[^A-Z ]", " ", ascii_).split())


def pass_name(surname: str, given_names: str) -> str:
    """``SURNAME/GIVEN NAMES`` in Latin capitals, cut at 20 characters and padded to them."""
    given = _letters(given_names)
    full = f"{_letters(surname)}/{given}" if given else _letters(surname)
    return full[:NAME_WIDTH].rstrip().ljust(NAME_WIDTH)


def bcbp(*, surname: str, given_names: str, pnr: str, destination: str, carrier: str, number: str,
         departure: datetime, timezone: str, seat: str | None, sequence: int, compartment: str = "Y") -> str:
    """The pass's text. The Julian date is the scheduled departure's day at the airport (``timezone``,
    the service's ops time zone), as the service reads it."""
    julian = departure.astimezone(ZoneInfo(timezone)).timetuple().tm_yday
    seat_item = (seat or "").rjust(4, "0")[-4:]
    return (f"M1{pass_name(surname, given_names)}E{pnr[:7]:<7}{ORIGIN}{destination[:3]:<3}{carrier[:3]:<3}"
            f"{number[:4]:0>4} {julian:03d}{compartment}{seat_item}{sequence % 10000:04d} 100")
