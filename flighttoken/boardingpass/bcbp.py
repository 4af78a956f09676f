"""Parse the text of an IATA BCBP (Resolution 792, format ``M``) into a :class:`BoardingPass`.

Layout: the unique mandatory items (format code, number of legs, name, e-ticket indicator), then per
leg the repeated mandatory items ending with the hex size of that leg's variable field. The first
leg's variable field starts with the unique conditional items ('>', version, a hex-sized block);
every leg's then holds a hex-sized block of repeated conditional items and the airline's private
data. Sized blocks are read as far as their size goes (older versions stop early). After the last
leg, '^' starts the security data (type, hex length, signature), kept for a verifier (security.py).

Anything missing or malformed raises :class:`InvalidBoardingPass` naming the item, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flighttoken.boardingpass.errors import InvalidBoardingPass

MAX_LEGS = 4
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


@dataclass(frozen=True, slots=True)
class Leg:
    """One flight of the pass. Mandatory items are always set; conditional ones are None when absent
    or blank. Text items are stripped of their padding."""

    pnr: str
    from_airport: str
    to_airport: str
    carrier: str
    flight_number: str
    """As printed without padding, e.g. ``0834`` or ``0834A``; :attr:`flight` drops the leading zeros."""
    julian_date: int
    """Day of the year of the flight (1-366), local to the departure airport (dates.py)."""
    compartment: str
    seat: str
    sequence_number: str
    passenger_status: str
    airline_numeric_code: str | None = None
    document_serial: str | None = None
    selectee: str | None = None
    international_doc_verification: str | None = None
    marketing_carrier: str | None = None
    frequent_flyer_airline: str | None = None
    frequent_flyer_number: str | None = None
    id_ad_indicator: str | None = None
    free_baggage_allowance: str | None = None
    fast_track: str | None = None
    airline_private: str | None = None

    @property
    def flight(self) -> str:
        """The flight number as the service stores it: ``0834`` → ``834``, ``0012A`` → ``12A``."""
        digits = self.flight_number.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        return (digits.lstrip("0") or "0") + self.flight_number[len(digits):]


@dataclass(frozen=True, slots=True)
class SecurityData:
    type: str
    length: int
    data: str


@dataclass(frozen=True, slots=True)
class BoardingPass:
    format_code: str
    number_of_legs: int
    passenger_name: str
    """SURNAME/GIVEN NAMES as encoded (at most 20 characters, padding stripped)."""
    eticket: str
    legs: tuple[Leg, ...]
    version: str | None = None
    passenger_description: str | None = None
    checkin_source: str | None = None
    issuance_source: str | None = None
    issue_date: str | None = None
    """Last digit of the year and day of the year, e.g. ``6225`` (dates.py ``issue_date``)."""
    document_type: str | None = None
    issuer: str | None = None
    bag_tags: tuple[str, ...] = ()
    security: SecurityData | None = None
    signed_text: str = field(default="", repr=False)
    """The text a signature covers: everything before the '^'."""

    @property
    def surname(self) -> str:
        return self.passenger_name.split("/", 1)[0].strip()

    @property
    def given_names(self) -> str:
        parts = self.passenger_name.split("/", 1)
        return parts[1].strip() if len(parts) == 2 else ""


class _Reader:
    """A cursor over the pass text: each read names the item it is for, so a short or malformed
    pass says which item it broke on."""

    def __init__(self, text: str, pos: int = 0, end: int | None = None) -> None:
        self.text, self.pos, self.end = text, pos, len(text) if end is None else end

    def left(self) -> int:
        return self.end - self.pos

    def take(self, name: str, width: int, pattern: str | None = None) -> str:
        if self.left() < width:
            raise InvalidBoardingPass(name, f"missing ({width} characters expected at position {self.pos + 1})")
        value = self.text[self.pos:self.pos + width]
        self.pos += width
        if pattern is not None and not re.fullmatch(pattern, value):
            raise InvalidBoardingPass(name, f"{value!r} is not valid")
        return value

    def size(self, name: str) -> int:
        value = self.take(name, 2)
        if not _HEX2.fullmatch(value):
            raise InvalidBoardingPass(name, f"{value!r} is not a two-digit hexadecimal size")
        return int(value, 16)

    def optional(self, width: int) -> str | None:
        """A conditional item: as much of it as the block holds; None when absent or blank."""
        value = self.text[self.pos:self.pos + min(width, max(self.left(), 0))]
        self.pos += len(value)
        return value.strip() or None


def _mandatory_leg(r: _Reader) -> tuple[dict[str, object], int]:
    items: dict[str, object] = {
        "pnr": r.take("pnr", 7, r"[A-Z0-9]{2,7} *").strip(),
        "from_airport": r.take("from_airport", 3, r"[A-Z]{3}"),
        "to_airport": r.take("to_airport", 3, r"[A-Z]{3}"),
        "carrier": r.take("carrier", 3, r"[A-Z0-9]{2,3} ?").strip(),
        "flight_number": r.take("flight_number", 5, r" *[0-9]{1,4}[A-Z ]?").strip(),
    }
    day = r.take("julian_date", 3, r"[0-9]{3}")
    if not 1 <= int(day) <= 366:
        raise InvalidBoardingPass("julian_date", f"{day!r} is not a day of the year")
    items.update(julian_date=int(day), compartment=r.take("compartment", 1, r"[A-Z]"),
                 seat=r.take("seat", 4, r"[A-Z0-9 ]{4}").strip(),
                 sequence_number=r.take("sequence_number", 5, r"[A-Z0-9 ]{5}").strip(),
                 passenger_status=r.take("passenger_status", 1, r"[A-Z0-9]"))
    return items, r.size("conditional_size")


def _repeated_conditional(r: _Reader) -> dict[str, object]:
    """The leg's hex-sized block of repeated conditional items, then the airline's private data."""
    items: dict[str, object] = {}
    if r.left() >= 2 and _HEX2.fullmatch(r.text[r.pos:r.pos + 2]):
        n = r.size("repeated_conditional_size")
        if n > r.left():
            raise InvalidBoardingPass("repeated_conditional_size", f"{n} exceeds the {r.left()} characters left")
        block = _Reader(r.text, r.pos, r.pos + n)
        for name, width in (("airline_numeric_code", 3), ("document_serial", 10), ("selectee", 1),
                            ("international_doc_verification", 1), ("marketing_carrier", 3),
                            ("frequent_flyer_airline", 3), ("frequent_flyer_number", 16), ("id_ad_indicator", 1),
                            ("free_baggage_allowance", 3), ("fast_track", 1)):
            items[name] = block.optional(width)
        r.pos += n  # items of a later version than this parser knows are skipped
    items["airline_private"] = r.text[r.pos:r.end].strip() or None
    return items


def _unique_conditional(r: _Reader) -> dict[str, object]:
    """'>', the version and the hex-sized block of items printed once per pass (first leg only)."""
    r.take("version_marker", 1, ">")
    items: dict[str, object] = {"version": r.take("version", 1, r"[0-9A-Z]")}
    n = r.size("unique_conditional_size")
    if n > r.left():
        raise InvalidBoardingPass("unique_conditional_size", f"{n} exceeds the {r.left()} characters left")
    block = _Reader(r.text, r.pos, r.pos + n)
    for name, width in (("passenger_description", 1), ("checkin_source", 1), ("issuance_source", 1),
                        ("issue_date", 4), ("document_type", 1), ("issuer", 3)):
        items[name] = block.optional(width)
    if items["issue_date"] is not None and not re.fullmatch(r"[0-9]{4}", str(items["issue_date"])):
        raise InvalidBoardingPass("issue_date", f"{items['issue_date']!r} is not a year digit and a day")
    items["bag_tags"] = tuple(t for t in (block.optional(13) for _ in range(3)) if t is not None)
    r.pos += n
    return items


def parse(text: str) -> BoardingPass:
    """The boarding pass ``text`` encodes (the barcode's content, as the device decoded it)."""
    if not text.isascii() or not text.isprintable():
        raise InvalidBoardingPass("format_code", "the pass must be printable ASCII text")
    r = _Reader(text)
    format_code = r.take("format_code", 1, "M")
    legs_count = int(r.take("number_of_legs", 1, f"[1-{MAX_LEGS}]"))
    name = r.take("passenger_name", 20, r"[A-Za-z][A-Za-z0-9 /.'-]*").rstrip()
    eticket = r.take("eticket_indicator", 1, r"[A-Z ]")
    unique: dict[str, object] = {}
    legs = []
    for i in range(legs_count):
        mandatory, size = _mandatory_leg(r)
        if size > r.left():
            raise InvalidBoardingPass("conditional_size", f"leg {i + 1}: {size} exceeds the {r.left()} characters left")
        variable = _Reader(text, r.pos, r.pos + size)
        if i == 0 and size and text[r.pos] == ">":
            unique = _unique_conditional(variable)
        legs.append(Leg(**mandatory, **_repeated_conditional(variable)))  # type: ignore[arg-type]
        r.pos += size
    security, signed = None, text[:r.pos]
    rest = text[r.pos:]
    if rest.startswith("^"):
        r.take("security_marker", 1, r"\^")
        kind = r.take("security_type", 1, r"[0-9A-Z ]")
        length = r.size("security_length")
        if length != r.left():
            raise InvalidBoardingPass("security_length", f"{length} does not match the {r.left()} characters left")
        security = SecurityData(type=kind, length=length, data=r.take("security_data", length))
    elif rest.strip():
        raise InvalidBoardingPass("security_marker", f"unexpected text after the last leg: {rest[:10]!r}")
    return BoardingPass(format_code=format_code, number_of_legs=legs_count, passenger_name=name, eticket=eticket,
                        legs=tuple(legs), security=security, signed_text=signed, **unique)  # type: ignore[arg-type]
