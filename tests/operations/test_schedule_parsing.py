"""Schedule files are read and validated line by line (no database: the import itself is tested
over HTTP in test_admin_api.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from flighttoken.devices.model import Device, DeviceKind
from flighttoken.errors import InvalidRequest
from flighttoken.flights.schedule_import import read_csv, read_json, validate

ADMIN = Device(id=uuid.uuid4(), name="admin", kind=DeviceKind.ADMIN)
CX_OPS = Device(id=uuid.uuid4(), name="cx-ops", kind=DeviceKind.AIRLINE_OPS, airline="CX")
HKT = ZoneInfo("Asia/Hong_Kong")
TOMORROW = (datetime.now(HKT) + timedelta(days=1)).date().isoformat()
HEADER = "airline,number,scheduled_departure,destination,gate,international,booked\n"


def _check(text: str, actor: Device = ADMIN, max_rows: int = 100):
    return validate(read_csv(text.encode()), actor, HKT, max_rows)


def test_a_good_file_gives_flights_with_local_times_in_the_airport_zone() -> None:
    good, errors = _check(HEADER + f"cx,884,{TOMORROW}T23:55,LAX,23,yes,300\n"
                                   f"KA,1,{TOMORROW}T08:00:00+00:00,PEK,,false,\n")
    assert errors == []
    (line1, cx), (line2, ka) = good
    assert (line1, line2) == (2, 3)
    assert (cx.airline, cx.number, cx.gate, cx.international, cx.booked) == ("CX", "884", "23", True, 300)
    assert cx.scheduled_departure.utcoffset() == timedelta(hours=8)
    assert (ka.gate, ka.international, ka.booked) == (None, False, None)
    assert ka.scheduled_departure.astimezone(UTC).hour == 8


def test_every_bad_field_is_named_with_its_physical_line() -> None:
    text = (HEADER
            + f"CX,884,{TOMORROW}T10:00,LAX,23,true,10\n"
            + "\n"  # blank lines are skipped but still counted
            + f'CX,"88 5",{TOMORROW}T10:00,LA,23,maybe,-1\n'
            + "CX,886,2001-01-01T10:00,LAX,23,true,1\n")
    good, errors = _check(text)
    assert [line for line, _ in good] == [2]
    by_field = {(e.line, e.field) for e in errors}
    assert by_field == {(4, "number"), (4, "destination"), (4, "international"), (4, "booked"),
                        (5, "scheduled_departure")}
    assert any("in the past" in e.message for e in errors)


def test_line_numbers_stay_physical_across_a_quoted_line_break() -> None:
    text = HEADER + f'CX,884,{TOMORROW}T10:00,LAX,"2\n3",true,1\nCX,885,not-a-time,LAX,23,true,1\n'
    _, errors = _check(text)
    # The gate is bad on line 2 (its value spans lines 2-3); the time is bad on line 4.
    assert {(e.line, e.field) for e in errors} == {(2, "gate"), (4, "scheduled_departure")}


def test_header_problems_are_line_one() -> None:
    _, errors = _check("airline,number,when,destination,colour\nCX,884,x,LAX,red\n")
    assert {(e.line, e.field) for e in errors if e.line == 1} == {
        (1, "scheduled_departure"), (1, "when"), (1, "colour")}


def test_a_flight_twice_in_one_file_is_refused_on_its_second_line() -> None:
    row = f"CX,884,{TOMORROW}T10:00+08:00,LAX,23,true,1\n"
    _, errors = _check(HEADER + row + row)
    assert [(e.line, e.message) for e in errors] == [(3, "the same flight as line 2")]


def test_an_airline_key_may_only_import_its_own_flights() -> None:
    _, errors = _check(HEADER + f"KA,1,{TOMORROW}T10:00,PEK,1,true,1\n", actor=CX_OPS)
    assert [(e.line, e.field) for e in errors] == [(2, "airline")]


def test_row_limit_and_empty_file() -> None:
    rows = "".join(f"CX,{n},{TOMORROW}T10:00,LAX,23,true,1\n" for n in range(1, 5))
    _, errors = _check(HEADER + rows, max_rows=3)
    assert [e.line for e in errors] == [5]
    _, errors = _check(HEADER)
    assert [e.message for e in errors] == ["the file has no flights"]
    with pytest.raises(InvalidRequest):
        list(read_csv(b""))
    with pytest.raises(InvalidRequest):
        list(read_csv(b"\xff\xfe"))


def test_a_byte_order_mark_is_ignored() -> None:
    good, errors = validate(read_csv(("\ufeff" + HEADER + f"CX,884,{TOMORROW}T10:00,LAX,23,1,1\n").encode()),
                            ADMIN, HKT, 10)
    assert errors == [] and len(good) == 1


def test_json_items_are_numbered_and_typed_values_are_accepted() -> None:
    body = (b'{"flights": [{"airline": "CX", "number": "884", "scheduled_departure": "' + TOMORROW.encode()
            + b'T10:00+08:00", "destination": "LAX", "international": true, "booked": 12},'
            b' {"airline": "CX", "number": "885", "destination": "LAX", "seats": 3}, 7]}')
    good, errors = validate(read_json(body), ADMIN, HKT, 10)
    assert len(good) == 1 and good[0][1].booked == 12
    assert [(e.line, e.field) for e in errors] == [(2, "seats"), (3, None)]
    with pytest.raises(InvalidRequest):
        list(read_json(b'{"airline": "CX"}'))
    with pytest.raises(InvalidRequest):
        list(read_json(b"[{"))
