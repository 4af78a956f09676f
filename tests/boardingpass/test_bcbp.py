"""The BCBP parser (flighttoken/boardingpass) on the IATA Resolution 792 implementation guide's
sample passes, and on passes broken one item at a time: each names the item."""

from __future__ import annotations

from datetime import date

import pytest

from flighttoken.boardingpass.bcbp import parse
from flighttoken.boardingpass.dates import flight_date, issue_date
from flighttoken.boardingpass.errors import InvalidBoardingPass
from flighttoken.boardingpass.names import bcbp_name, names_match
from flighttoken.boardingpass.security import signature_valid

MANDATORY = "M1DESMARAIS/LUC       EABC123 YULFRAAC 0834 326J001A0025 100"
SIGNATURE = "GIWVC5EH7JNT684FVNJ91W2QA4DVN5J8K4F0L0GEQ3DF5TGBN8709HKT5D3DW3GBHFCVHMY7J5T6HFR41W2QA4DVN5J8K4F0L0GE"
TWO_LEGS = ("M2DESMARAIS/LUC       EABC123 YULFRAAC 0834 226F001A0025 14D>6181WW6225BAC 00141234560032A0141234567890"
            " 1AC AC 1234567890123    20KYLX58ZDEF456 FRAGVALH 3664 227C012C0002 12E2A0140987654321 1AC AC "
            "1234567890123    2PCNWQ^164" + SIGNATURE)


def test_the_mandatory_items() -> None:
    bp = parse(MANDATORY)
    assert (bp.format_code, bp.number_of_legs, bp.passenger_name, bp.eticket) == ("M", 1, "DESMARAIS/LUC", "E")
    assert (bp.surname, bp.given_names) == ("DESMARAIS", "LUC")
    leg, = bp.legs
    assert (leg.pnr, leg.from_airport, leg.to_airport, leg.carrier, leg.flight_number, leg.flight) == \
        ("ABC123", "YUL", "FRA", "AC", "0834", "834")
    assert (leg.julian_date, leg.compartment, leg.seat, leg.sequence_number, leg.passenger_status) == \
        (326, "J", "001A", "0025", "1")
    assert bp.version is None and bp.security is None and leg.airline_private is None


def test_two_legs_with_conditional_items_and_security_data() -> None:
    bp = parse(TWO_LEGS)
    assert bp.version == "6" and bp.number_of_legs == 2
    assert (bp.passenger_description, bp.checkin_source, bp.issuance_source, bp.issue_date, bp.document_type,
            bp.issuer, bp.bag_tags) == ("1", "W", "W", "6225", "B", "AC", ("0014123456003",))
    first, second = bp.legs
    assert (first.airline_numeric_code, first.document_serial, first.selectee, first.international_doc_verification,
            first.marketing_carrier, first.frequent_flyer_airline, first.frequent_flyer_number,
            first.free_baggage_allowance, first.fast_track, first.airline_private) == \
        ("014", "1234567890", None, "1", "AC", "AC", "1234567890123", "20K", "Y", "LX58Z")
    assert (second.pnr, second.from_airport, second.to_airport, second.carrier, second.flight, second.julian_date,
            second.seat, second.free_baggage_allowance, second.fast_track, second.airline_private) == \
        ("DEF456", "FRA", "GVA", "LH", "3664", 227, "012C", "2PC", "N", "WQ")
    assert bp.security is not None
    assert (bp.security.type, bp.security.length, bp.security.data) == ("1", 100, SIGNATURE)
    assert bp.signed_text == TWO_LEGS.split("^")[0]
    assert bp.issue_date is not None
    assert issue_date(bp.issue_date, date(2016, 8, 14)) == date(2016, 8, 12)


def test_a_verifier_plugs_in() -> None:
    class Accepts:
        def verify(self, boarding_pass) -> bool:
            return boarding_pass.signed_text.startswith("M2")

    assert signature_valid(parse(TWO_LEGS), None) is None
    assert signature_valid(parse(TWO_LEGS), Accepts()) is True
    assert signature_valid(parse(MANDATORY), Accepts()) is False  # unsigned


@pytest.mark.parametrize(("text", "field"), [
    ("", "format_code"),
    ("X" + MANDATORY[1:], "format_code"),
    ("M5" + MANDATORY[2:], "number_of_legs"),
    ("M1" + " " * 20 + MANDATORY[22:], "passenger_name"),
    (MANDATORY[:23] + "ABC12! " + MANDATORY[30:], "pnr"),
    (MANDATORY.replace("YULFRA", "YU1FRA"), "from_airport"),
    (MANDATORY.replace("0834 ", "08X4 "), "flight_number"),
    (MANDATORY.replace(" 326J", " 367J"), "julian_date"),
    (MANDATORY.replace(" 326J", " 3A6J"), "julian_date"),
    (MANDATORY[:-10], "seat"),
    (MANDATORY[:-2] + "0Z", "conditional_size"),
    (MANDATORY[:-2] + "10", "conditional_size"),
    (MANDATORY + "junk", "security_marker"),
    (MANDATORY + "^105ABC", "security_length"),
    (MANDATORY[:-2] + "05>6FF0", "unique_conditional_size"),
    (MANDATORY.replace("LUC ", "LÜC "), "format_code"),
])
def test_a_malformed_pass_names_the_item(text: str, field: str) -> None:
    with pytest.raises(InvalidBoardingPass) as caught:
        parse(text)
    assert caught.value.field == field
    assert (caught.value.status, caught.value.code, caught.value.extra) == (422, "invalid_boarding_pass",
                                                                              {"field": field})


@pytest.mark.parametrize(("julian", "reference", "expected"), [
    (326, date(2026, 11, 20), date(2026, 11, 22)),
    (365, date(2027, 1, 2), date(2026, 12, 31)),  # seen just after new year: last year's
    (2, date(2026, 12, 30), date(2027, 1, 2)),  # seen just before: next year's
    (60, date(2028, 2, 28), date(2028, 2, 29)),  # a leap year
    (366, date(2028, 12, 30), date(2028, 12, 31)),
])
def test_the_julian_date_is_the_nearest_to_today(julian: int, reference: date, expected: date) -> None:
    assert flight_date(julian, reference) == expected


def test_day_366_far_from_a_leap_year_is_no_date() -> None:
    with pytest.raises(ValueError):
        flight_date(366, date(2026, 6, 30))


def test_names_in_bcbp_form() -> None:
    assert bcbp_name("Chan", "Tai Man") == "CHAN/TAI MAN"
    assert bcbp_name("Müller-Lüdenscheidt", "Hans Jürgen Alexander") == "MULLER LUDENSCHEIDT/"  # cut at 20
    assert names_match("CHAN/TAI MAN", "Chan", "Tai Man")
    assert names_match("CHAN/TAI MAN MR", "Chan", "Tai Man")
    assert names_match("CHAN/TAI MANMR", "Chan", "Tai Man")
    assert not names_match("CHAN/TAI", "Chan", "Tai Man")
    assert not names_match("CHEN/TAI MAN", "Chan", "Tai Man")
