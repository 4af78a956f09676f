"""Schemathesis hooks for tests/resilience/test_fuzz_openapi.py (loaded through SCHEMATHESIS_HOOKS):
widen its strategies to two inputs that once crashed the service with a 500 (issue 16) and that
the schema's own strategies never produce: dates at the edges of the calendar (9999-12-31 has no next
midnight) and JSON bodies nested far deeper than msgspec decodes (a RecursionError)."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

EDGE_DATES = ("0001-01-01", "0001-01-02", "9999-12-30", "9999-12-31")
EDGE_TIMES = ("0001-01-01T00:00:00Z", "0001-01-01T00:30:00+14:00", "9999-12-31T23:59:59Z",
              "9999-12-31T23:30:00-14:00")
DEPTH = 100_000
DEEP_BODIES = (b"[" * DEPTH + b"]" * DEPTH, b'{"a":' * DEPTH + b"1" + b"}" * DEPTH)

schemathesis.openapi.format("date", st.one_of(st.sampled_from(EDGE_DATES), st.dates().map(str)))
schemathesis.openapi.format("date-time", st.one_of(
    st.sampled_from(EDGE_TIMES), st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())))


@schemathesis.hook
def flatmap_body(context, body):
    # Raw bytes go out as they are (schemathesis would not serialize a 100k-deep list itself).
    return st.one_of(st.just(body), st.sampled_from(DEEP_BODIES))


@schemathesis.hook
def flatmap_query(context, query):
    # The format strategies above never reach an optional ``oneOf [date, null]`` query parameter
    # (checked: 1,822 cases on the flight listing, with the far-date fix reverted, gave no 500).
    # So every query may also carry an edge date, and the listing's ``?date=`` gets them.
    if query is None:
        return st.just(query)
    return st.one_of(st.just(query), st.sampled_from(EDGE_DATES).map(lambda d: {**query, "date": d}))
