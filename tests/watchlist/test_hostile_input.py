"""Malformed input to the authority's endpoints gets a clear 4xx and changes nothing, never a 5xx
(these routes are outside the OpenAPI document the general fuzzing works from)."""

from __future__ import annotations

import uuid

import pytest

from tests.watchlist.helpers import extra_keys, subject_body

HUGE = "9" * 30


@pytest.fixture(scope="module")
async def authority(make_service):
    async with make_service( authority=True) as svc:
        keys = await extra_keys(svc.services.db())
        async with svc.authority_client(keys["authority"]) as client:
            yield svc, client


CASES = [
    ("GET", f"/v1/alerts/{HUGE}", None),
    ("GET", "/v1/alerts/-1", None),
    ("POST", f"/v1/alerts/{HUGE}/resolve", {"outcome": "confirmed", "resolved_by": "x"}),
    ("POST", "/v1/alerts/1/resolve", {"outcome": "maybe", "resolved_by": "x"}),
    ("POST", "/v1/alerts/1/resolve", {"outcome": "confirmed", "resolved_by": "x\u0000y"}),
    ("POST", "/v1/alerts/1/resolve", {"outcome": "confirmed", "resolved_by": ""}),
    ("POST", "/v1/alerts/1/resolve", [1, 2]),
    ("POST", "/v1/alerts/1/resolve", {"outcome": "confirmed", "resolved_by": "x", "note": "a\u0000"}),
    ("GET", f"/v1/alerts?after={HUGE}", None),
    ("GET", "/v1/alerts?after=-5", None),
    ("GET", "/v1/alerts?limit=0", None),
    ("GET", "/v1/alerts?limit=100000", None),
    ("GET", "/v1/alerts?status=everything", None),
    ("GET", "/v1/watchlist/subjects?offset=-1", None),
    ("GET", f"/v1/watchlist/subjects?offset={HUGE}", None),
    ("GET", "/v1/watchlist/subjects?status=%00", None),
    ("GET", "/v1/watchlist/subjects/not-a-uuid", None),
    ("POST", f"/v1/watchlist/subjects/{uuid.uuid4()}/remove", {"removed_by": "a\u0000"}),
    ("POST", "/v1/watchlist/subjects", {"photos": "nope"}),
    ("POST", "/v1/watchlist/subjects", {**subject_body([b"x"]), "added_by": "\u0000"}),
    ("POST", "/v1/watchlist/subjects", {**subject_body([b"x"]), "expires_at": "2030-01-01T00:00:00"}),
    ("POST", "/v1/watchlist/subjects", {**subject_body([b"x"]), "photos": []}),
    ("POST", "/v1/watchlist/subjects", {**subject_body([b"x"]), "photos": ["!!notbase64"]}),
    ("POST", "/v1/watchlist/subjects", {**subject_body([b"x"] * 6)}),
]


@pytest.mark.parametrize(("method", "path", "body"), CASES)
async def test_malformed_input_is_a_clear_4xx(authority, method: str, path: str, body) -> None:
    svc, client = authority
    r = await client.request(method, path, json=body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"]
    assert await svc.services.db().fetchval("SELECT count(*) FROM watchlist_subjects") == 0


async def test_a_bad_last_event_id_is_refused(authority) -> None:
    _, client = authority
    for value in ("abc", HUGE, "-1"):
        r = await client.get("/v1/alerts/stream", headers={"Last-Event-ID": value})
        assert r.status_code == 400, (value, r.text)
