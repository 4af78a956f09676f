"""Departure windows: fixed buckets of scheduled departure time (UTC epoch aligned).

E-channels and lounges search the galleries of the windows whose departures are near, so each
search covers a bounded, pre-verified group rather than the whole airport.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def window_start(departure: datetime, window_seconds: int) -> datetime:
    epoch = int(departure.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_seconds, tz=UTC)


def windows_between(start: datetime, end: datetime, window_seconds: int) -> list[datetime]:
    """Every window start whose bucket overlaps [start, end]."""
    first = window_start(start, window_seconds)
    out: list[datetime] = []
    current = first
    while current <= end:
        out.append(current)
        current += timedelta(seconds=window_seconds)
    return out
