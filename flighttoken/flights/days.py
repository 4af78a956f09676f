"""What "today" means to airline operations, in the airport's time zone (FLIGHTTOKEN_OPS_TIMEZONE)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flighttoken.errors import InvalidRequest

# The ops day is the local calendar day, widened so the last and next few hours are always in view:
# at 23:00 a 00:30 departure is on the board, and just after midnight so is the late flight still boarding.
EDGE = timedelta(hours=6)


def calendar_day(tz_name: str, day: date) -> tuple[datetime, datetime]:
    """The local day's bounds; a day at the calendar's edge (9999-12-31 has no next midnight, and
    0001-01-01 east of UTC starts in year 0 there) is refused as a bad range, not an OverflowError."""
    tz = ZoneInfo(tz_name)
    try:
        start, end = datetime.combine(day, time(0), tz), datetime.combine(day + timedelta(days=1), time(0), tz)
        _ = start.astimezone(UTC), end.astimezone(UTC)  # what the database query will need
    except OverflowError:
        raise InvalidRequest(f"{day} is outside the dates flights can be listed for", code="invalid_range") from None
    return start, end


def ops_day(tz_name: str, now: datetime) -> tuple[datetime, datetime]:
    start, end = calendar_day(tz_name, now.astimezone(ZoneInfo(tz_name)).date())
    return min(start, now - EDGE), max(end, now + EDGE)
