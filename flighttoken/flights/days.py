"""What "today" means to airline operations, in the airport's time zone (FLIGHTTOKEN_OPS_TIMEZONE)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# The ops day is the local calendar day, widened so the last and next few hours are always in view:
# at 23:00 a 00:30 departure is on the board, and just after midnight so is the late flight still boarding.
EDGE = timedelta(hours=6)


def calendar_day(tz_name: str, day: date) -> tuple[datetime, datetime]:
    tz = ZoneInfo(tz_name)
    return datetime.combine(day, time(0), tz), datetime.combine(day + timedelta(days=1), time(0), tz)


def ops_day(tz_name: str, now: datetime) -> tuple[datetime, datetime]:
    start, end = calendar_day(tz_name, now.astimezone(ZoneInfo(tz_name)).date())
    return min(start, now - EDGE), max(end, now + EDGE)
