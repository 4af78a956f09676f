"""Only authority keys reach the watchlist, and only on the authority listener: on the public
listener every key (the authority's too) gets the same 404 problem as an unknown path on every
watchlist and alert route (enumerated from the authority app, so new routes are covered); on the
authority listener every other key does; no key or a bad key gets that same 404; and nothing public
(the OpenAPI document) names them. tests/security/test_authority_routes_discoverable.py checks the
public listener method by method and path variant by path variant."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.support import journey as j
from tests.watchlist.helpers import extra_keys

NON_AUTHORITY = ["kiosk", "e_channel", "lounge", "gate23", "admin", "ops_cx"]
WATCHLIST_PREFIXES = ("/v1/watchlist", "/v1/alerts")
_VOLATILE = {"instance", "request_id"}


@pytest.fixture(scope="module")
async def svc_keys(make_service):
    # The limiter is not under test here: a fast machine would otherwise see 429 for the anonymous sweep.
    async with make_service(authority=True, rate_limit_per_second=100_000) as svc:
        pool = svc.services.db()
        keys = {**await j.make_devices(pool), **await extra_keys(pool)}
        yield svc, keys


def watchlist_calls(app) -> list[tuple[str, str]]:
    """(method, concrete path) for every watchlist and alert route the app serves."""
    calls = []
    for route in app.routes:
        if not route.path.startswith(WATCHLIST_PREFIXES):
            continue
        path = re.sub(r"\{\w+:uuid\}", str(uuid.uuid4()), route.path)
        path = re.sub(r"\{\w+:int\}", "1", path)
        path = re.sub(r"\{\w+(:\w+)?\}", "x", path)
        for method in sorted(getattr(route, "methods", set()) - {"OPTIONS", "HEAD"}):
            calls.append((method, path))
    return calls


def _stable(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in _VOLATILE}


async def test_the_route_list_covers_every_watchlist_endpoint(svc_keys) -> None:
    svc, _ = svc_keys
    assert watchlist_calls(svc.app) == []  # the public app has none of them
    calls = set(watchlist_calls(svc.authority_app))
    paths = {re.sub(r"[0-9a-f-]{36}", "ID", p) for _, p in calls}
    assert {"/v1/watchlist/subjects", "/v1/watchlist/subjects/ID", "/v1/watchlist/subjects/ID/remove",
            "/v1/alerts", "/v1/alerts/stream", "/v1/alerts/1", "/v1/alerts/1/resolve"} <= paths
    assert len(calls) >= 8


@pytest.mark.parametrize(("listener", "role"), [*(("authority", r) for r in NON_AUTHORITY),
                                                 *(("public", r) for r in [*NON_AUTHORITY, "authority"])])
async def test_every_other_role_gets_the_404_of_an_unknown_path(svc_keys, listener: str, role: str) -> None:
    svc, keys = svc_keys
    connect = svc.authority_client if listener == "authority" else svc.client
    async with connect(keys[role]) as client:
        missing = await client.get(f"/v1/no-such-route-{uuid.uuid4().hex[:6]}")
        assert missing.status_code == 404
        for method, path in watchlist_calls(svc.authority_app):
            r = await client.request(method, path, json={} if method in ("POST", "PUT") else None)
            assert r.status_code in (403, 404), (role, method, path, r.status_code)
            # Not a 403 saying "not for you": the same answer as a path that does not exist.
            assert r.status_code == 404
            assert r.headers["content-type"] == missing.headers["content-type"]
            assert _stable(r.json()) == _stable(missing.json()), (method, path)
    rows = await svc.services.db().fetchval("SELECT count(*) FROM watchlist_subjects")
    assert rows == 0


@pytest.mark.parametrize("key", [None, "ftk_" + "B" * 43], ids=["no_key", "unknown_key"])
@pytest.mark.parametrize("listener", ["public", "authority"])
async def test_without_a_valid_key_every_watchlist_route_is_an_unknown_path(svc_keys, listener: str, key) -> None:
    svc, _ = svc_keys
    connect = svc.authority_client if listener == "authority" else svc.client
    async with connect(key) as anonymous:
        missing = await anonymous.get(f"/v1/no-such-route-{uuid.uuid4().hex[:6]}")
        assert missing.status_code == 404
        for method, path in watchlist_calls(svc.authority_app):
            r = await anonymous.request(method, path, json={} if method in ("POST", "PUT") else None)
            assert r.status_code == 404, (method, path)
            assert _stable(r.json()) == _stable(missing.json()), (method, path)
            # Same header names as the unknown path (no rate-limit or other route-only headers).
            assert set(r.headers) == set(missing.headers), (method, path)
    # Elsewhere a missing key is still a plain 401.
    async with svc.client(key) as anonymous:
        assert (await anonymous.get("/v1/flights")).status_code == 401


async def test_the_authority_key_is_let_in(svc_keys) -> None:
    svc, keys = svc_keys
    async with svc.authority_client(keys["authority"]) as authority:
        assert (await authority.get("/v1/watchlist/subjects")).status_code == 200
        assert (await authority.get("/v1/alerts")).status_code == 200
        r = await authority.get(f"/v1/watchlist/subjects/{uuid.uuid4()}")
        assert (r.status_code, r.json()["code"]) == (404, "subject_not_found")
        r = await authority.post("/v1/watchlist/subjects", json={})
        assert r.status_code == 400
    # On the public listener the same key is an unknown key, like any other revoked one.
    async with svc.client(keys["authority"]) as elsewhere:
        r = await elsewhere.get("/v1/flights")
    assert (r.status_code, r.json()["code"]) == (401, "invalid_api_key")


async def test_the_public_api_document_does_not_name_the_watchlist(svc_keys) -> None:
    svc, _ = svc_keys
    async with svc.client() as anonymous:
        r = await anonymous.get("/schema/openapi.json")
    assert r.status_code == 200
    text = r.text.lower()
    assert "/v1/watchlist" not in text and "/v1/alerts" not in text
    assert "watchlist" not in text
