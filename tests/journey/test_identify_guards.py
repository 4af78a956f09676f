"""Issue 4: the identify route's guards run on the event loop. Litestar runs a plain-function guard
in a worker thread (``AsyncCallable``): two thread hops per identify for a few dict look-ups."""

from __future__ import annotations

from litestar.routes import HTTPRoute
from litestar.utils.sync import AsyncCallable

from flighttoken.app import create_app


def test_identify_and_enrolment_guards_are_coroutines(base_settings) -> None:
    app = create_app(base_settings, engine=object())  # no lifespan: nothing starts
    checked = 0
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path not in ("/v1/identify", "/v1/enrolments"):
            continue
        for handler in route.route_handlers:
            if "POST" not in handler.http_methods:
                continue  # Litestar's own OPTIONS handler
            guards = handler.resolve_guards()
            assert len(guards) >= 2  # the app-wide key check and the route's own kinds
            assert not [g for g in guards if isinstance(g, AsyncCallable)], f"{route.path}: a guard runs in a thread"
            checked += 1
    assert checked == 2
