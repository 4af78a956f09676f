"""A pass's Julian days as calendar dates: BCBP prints the day of the year without the year, so
the year is the one that puts the day nearest a reference date (today, local to the airport)."""

from __future__ import annotations

from datetime import date, timedelta


def _day_of(year: int, day: int) -> date | None:
    first = date(year, 1, 1)
    when = first + timedelta(days=day - 1)
    return when if when.year == year else None  # day 366 of a common year is no date


def flight_date(julian: int, reference: date) -> date:
    """The date of day ``julian`` nearest ``reference``: day 365 seen on 2 January is last year's
    31 December, day 2 seen on 30 December is next year's 2 January. ValueError if no year has it
    near (day 366 far from a leap year)."""
    if not 1 <= julian <= 366:
        raise ValueError(f"{julian} is not a day of the year")
    candidates = [d for y in (reference.year - 1, reference.year, reference.year + 1)
                  if (d := _day_of(y, julian)) is not None]
    best = min(candidates, key=lambda d: abs(d - reference))
    if abs(best - reference) > timedelta(days=183):
        raise ValueError(f"day {julian} is not within half a year of {reference}")
    return best


def issue_date(code: str, reference: date) -> date | None:
    """The date of issue (``YDDD``: last digit of the year, day of the year): the latest such date
    not after ``reference``; None when the code is not a valid date."""
    if len(code) != 4 or not code.isdigit() or not 1 <= int(code[1:]) <= 366:
        return None
    year = reference.year - (reference.year - int(code[0])) % 10
    for y in (year, year - 10):
        when = _day_of(y, int(code[1:]))
        if when is not None and when <= reference:
            return when
    return None
