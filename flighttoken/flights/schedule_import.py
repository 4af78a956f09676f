"""Bulk schedule import (CSV or JSON): every line validated, then all flights created in one
transaction, or none.

A file with any bad line imports nothing; the 422 problem lists every error as
``{line, field, message}``. CSV lines are the file's physical line numbers (the header is line 1);
JSON "lines" are the 1-based position of the flight in the array. Departure times without an
offset are taken in the airport's time zone (``FLIGHTTOKEN_OPS_TIMEZONE``).

CSV columns (header required, any order): ``airline, number, scheduled_departure, destination``
and optionally ``gate, international, booked``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import structlog

from flighttoken.db.queries import audit
from flighttoken.db.queries import flights as q
from flighttoken.devices.model import Device
from flighttoken.errors import TOO_DEEP, InvalidRequest, Unprocessable
from flighttoken.flights.model import AirlineCode, AirportCode, Flight, FlightNumber, GateCode, NewFlight
from flighttoken.flights.scope import can_see
from flighttoken.flights.service import SCHEDULE_SPAN, actor_of, new_flight
from flighttoken.services import Services

log = structlog.get_logger(__name__)

REQUIRED = ("airline", "number", "scheduled_departure", "destination")
OPTIONAL = ("gate", "international", "booked")
CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})
JSON_TYPES = frozenset({"application/json"})
# Enough to find every mistake in a bad file, bounded so the error response stays small.
MAX_ERRORS = 200
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


class LineError(msgspec.Struct):
    line: int
    field: str | None
    message: str


class ImportResult(msgspec.Struct):
    imported: int
    flights: list[Flight]


class _Bad(ValueError):
    pass


def _pattern(annotated: Any) -> re.Pattern[str]:
    # The same patterns the flight API validates with, so the two can never disagree.
    return re.compile(annotated.__metadata__[0].pattern)


def _code(annotated: Any, what: str, upper: bool = True) -> Callable[[Any], str]:
    pattern = _pattern(annotated)

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad(f"{what} must be text")
        text = value.strip().upper() if upper else value.strip()
        if not pattern.match(text):
            raise _Bad(f"{value!r} is not a valid {what}")
        return text

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Bad(f"{value!r} is not true or false")


def _booked(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Bad("booked must be a whole number")
    try:
        n = int(value)
    except ValueError:
        raise _Bad(f"{value!r} is not a whole number") from None
    if not 0 <= n <= 2000:
        raise _Bad("booked must be between 0 and 2000")
    return n


def _departure(tz: ZoneInfo) -> Callable[[Any], datetime]:
    def parse(value: Any) -> datetime:
        if not isinstance(value, str):
            raise _Bad("scheduled_departure must be an ISO 8601 date and time")
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Bad(f"{value!r} is not an ISO 8601 date and time (e.g. 2026-11-23T14:05+08:00)") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz)
        if when < datetime.now(UTC):
            raise _Bad(f"{value} is in the past")
        if when - datetime.now(UTC) > SCHEDULE_SPAN:
            raise _Bad(f"{value} is more than {SCHEDULE_SPAN.days} days ahead")
        return when

    return parse


def _parsers(tz: ZoneInfo) -> dict[str, Callable[[Any], Any]]:
    return {"airline": _code(AirlineCode, "airline code"), "number": _code(FlightNumber, "flight number"),
            "scheduled_departure": _departure(tz), "destination": _code(AirportCode, "IATA airport code"),
            "gate": _code(GateCode, "gate", upper=False), "international": _bool, "booked": _booked}


# ---- reading the file ---------------------------------------------------------------------------

def read_csv(body: bytes) -> Iterator[tuple[int, dict[str, Any] | LineError]]:
    try:
        text = body.decode("utf-8-sig")  # spreadsheets often prepend a byte-order mark
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the CSV file is not UTF-8 (byte {exc.start})", code="invalid_csv") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise InvalidRequest("the CSV file is empty", code="invalid_csv") from None
    except csv.Error as exc:
        raise InvalidRequest(f"line 1: {exc}", code="invalid_csv") from None
    for problem in _header_problems(header):
        yield 1, problem
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, LineError(start, None, f"unreadable CSV: {exc}")
            return
        line, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue  # blank lines are harmless
        if len(cells) != len(header):
            yield line, LineError(line, None, f"{len(cells)} values for {len(header)} columns")
            continue
        yield line, {h: c for h, c in zip(header, cells, strict=True) if c.strip() != ""}


def _header_problems(header: list[str]) -> Iterator[LineError]:
    known = set(REQUIRED) | set(OPTIONAL)
    for name in REQUIRED:
        if name not in header:
            yield LineError(1, name, f"the header has no {name} column")
    for name in header:
        if name not in known:
            yield LineError(1, name, f"unknown column {name!r} (columns: {', '.join(REQUIRED + OPTIONAL)})")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            yield LineError(1, name, f"column {name!r} appears twice")
        seen.add(name)


def read_json(body: bytes) -> Iterator[tuple[int, dict[str, Any] | LineError]]:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the JSON is malformed: {exc}", code="invalid_json") from None
    except RecursionError:  # msgspec's guard against a stack overflow, not a bug of ours
        raise InvalidRequest(TOO_DEEP, code="invalid_json") from None
    if isinstance(data, dict) and set(data) == {"flights"}:
        data = data["flights"]
    if not isinstance(data, list):
        raise InvalidRequest('send a JSON array of flights (or {"flights": [...]})', code="invalid_json")
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            yield i, LineError(i, None, "each flight must be a JSON object")
            continue
        unknown = [k for k in item if k not in REQUIRED and k not in OPTIONAL]
        if unknown:
            yield i, LineError(i, unknown[0], f"unknown field {unknown[0]!r}")
            continue
        yield i, {k: v for k, v in item.items() if v is not None and v != ""}


# ---- validating and importing -------------------------------------------------------------------

def validate(rows: Iterator[tuple[int, dict[str, Any] | LineError]], actor: Device, tz: ZoneInfo,
             max_rows: int) -> tuple[list[tuple[int, NewFlight]], list[LineError]]:
    parsers = _parsers(tz)
    good: list[tuple[int, NewFlight]] = []
    errors: list[LineError] = []
    seen: dict[tuple[str, str, datetime], int] = {}
    count = 0
    for line, row in rows:
        if isinstance(row, LineError):
            errors.append(row)
            continue
        count += 1
        if count > max_rows:
            errors.append(LineError(line, None, f"a schedule may carry at most {max_rows} flights"))
            break
        values: dict[str, Any] = {}
        line_errors = []
        for name, parse in parsers.items():
            if name not in row:
                if name in REQUIRED:
                    line_errors.append(LineError(line, name, f"{name} is required"))
                continue
            try:
                values[name] = parse(row[name])
            except _Bad as exc:
                line_errors.append(LineError(line, name, str(exc)))
        if "airline" in values and not can_see(actor, values["airline"]):
            line_errors.append(LineError(line, "airline", f"this key may import only {actor.airline} flights"))
        if line_errors:
            errors.extend(line_errors)
            continue
        key = (values["airline"], values["number"], values["scheduled_departure"])
        if key in seen:
            errors.append(LineError(line, None, f"the same flight as line {seen[key]}"))
            continue
        seen[key] = line
        good.append((line, NewFlight(**values)))
    if not good and not errors:
        errors.append(LineError(1, None, "the file has no flights"))
    return good, errors


def _reject(errors: list[LineError]) -> Unprocessable:
    lines = sorted({e.line for e in errors})
    shown = ", ".join(str(n) for n in lines[:10])
    more = "" if len(lines) <= 10 else f" and {len(lines) - 10} more"
    plural = "s" if len(lines) > 1 else ""
    return Unprocessable(f"nothing was imported: fix line{plural} {shown}{more}", code="schedule_invalid",
                         errors=[msgspec.to_builtins(e) for e in errors[:MAX_ERRORS]], error_count=len(errors))


def read_schedule(body: bytes, content_type: str) -> Iterator[tuple[int, dict[str, Any] | LineError]]:
    media = content_type.split(";")[0].strip().lower()
    if media in CSV_TYPES:
        return read_csv(body)
    if media in JSON_TYPES:
        return read_json(body)
    raise InvalidRequest("send the schedule as text/csv or application/json", code="unsupported_media_type",
                         status=415)


async def import_schedule(services: Services, actor: Device, body: bytes, content_type: str) -> ImportResult:
    settings = services.settings
    good, errors = validate(read_schedule(body, content_type), actor, ZoneInfo(settings.operations.ops_timezone),
                            settings.operations.schedule_import_max_rows)
    if not errors:
        async with services.db().acquire() as conn:
            existing = await q.existing_codes(conn, [(f.airline, f.number, f.scheduled_departure) for _, f in good])
        errors = [LineError(line, None, f"flight {f.airline}{f.number} at {f.scheduled_departure.isoformat()}"
                                        " already exists")
                  for line, f in good if (f.airline, f.number, f.scheduled_departure) in existing]
    if errors:
        await audit.record(services.db(), actor=actor_of(actor), action="flight.import", outcome="refused",
                           detail={"errors": len(errors), "first_line": min(e.line for e in errors)})
        raise _reject(errors)
    flights: list[Flight] = []
    async with services.db().acquire() as conn, conn.transaction():
        for line, new in good:
            flight = new_flight(services, new)
            if not await q.insert(conn, flight):  # created since we checked: the whole import rolls back
                raise _reject([LineError(line, None, f"flight {flight.code} was created meanwhile")])
            await services.vault.create_flight_key(conn, flight.id)
            await audit.record(conn, actor=actor_of(actor), action="flight.create", outcome="ok",
                               flight_id=flight.id, detail={"flight": flight.code, "via": "import"})
            flights.append(flight)
        await audit.record(conn, actor=actor_of(actor), action="flight.import", outcome="ok",
                           detail={"flights": len(flights)})
    log.info("schedule_imported", flights=len(flights))
    return ImportResult(imported=len(flights), flights=flights)
