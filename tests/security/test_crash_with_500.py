"""Single requests that crashed the service with a 500: far dates in a flight listing and very deep
JSON bodies. Each is a 400 problem with a stable code, changes nothing, and the service stays ready."""

from __future__ import annotations

from datetime import date

import pytest

from flighttoken.errors import InvalidRequest
from flighttoken.flights.days import calendar_day
from tests.support import journey as j

DEPTH = 100_000


@pytest.fixture(scope="module")
async def service(make_service):
    async with make_service() as svc:
        keys = await j.make_devices(svc.services.db())
        yield svc, keys


async def _flights(svc) -> int:
    return await svc.services.db().fetchval("SELECT count(*) FROM flights")


def _problem(r, code: str) -> None:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code, r.json()


async def test_far_dates_in_a_flight_listing_are_400(service) -> None:
    svc, keys = service
    async with svc.client(keys["admin"]) as admin:
        r = await admin.get("/v1/flights", params={"date": "9999-12-31"})  # its next midnight overflowed
        _problem(r, "invalid_range")
        assert (await admin.get("/health/ready")).status_code == 200
        # The edges of the calendar that still fit are answered normally.
        for day in ("9999-12-30", "0001-01-01"):
            assert (await admin.get("/v1/flights", params={"date": day})).status_code == 200, day
    # East of UTC, the first local day starts in year 0 in UTC: refused the same way.
    with pytest.raises(InvalidRequest) as refused:
        calendar_day("Asia/Hong_Kong", date(1, 1, 1))
    assert refused.value.code == "invalid_range"


@pytest.mark.parametrize("body", [b"[" * DEPTH + b"]" * DEPTH, b'{"a":' * DEPTH + b"1" + b"}" * DEPTH],
                         ids=["deep-array", "deep-object"])
@pytest.mark.parametrize("path", ["/v1/flights", "/v1/flights/import"])
async def test_a_100k_deep_json_body_is_400(service, path, body) -> None:
    svc, keys = service
    before = await _flights(svc)
    async with svc.client(keys["admin"]) as admin:
        r = await admin.post(path, content=body, headers={"Content-Type": "application/json"})
        _problem(r, "invalid_json" if path.endswith("/import") else "invalid_request")
        assert "deep" in r.json()["detail"]
        assert (await admin.get("/health/ready")).status_code == 200
    assert await _flights(svc) == before


async def test_a_flight_departing_at_the_end_of_the_calendar_is_400(service) -> None:
    """Found by the widened fuzzing: a flight created for 9999-12-31T23:59:59Z made every later
    GET /v1/ops/summary a 500 (its purge deadline overflowed)."""
    svc, keys = service
    before = await _flights(svc)
    flight = {"airline": "CX", "number": "999", "destination": "LAX", "scheduled_departure": "9999-12-31T23:59:59Z"}
    async with svc.client(keys["admin"]) as admin:
        _problem(await admin.post("/v1/flights", json=flight), "departure_out_of_range")
        assert await _flights(svc) == before
        assert (await admin.get("/v1/ops/summary")).status_code == 200
        created = await j.create_flight(admin, "998", "23")
        r = await admin.post(f"/v1/flights/{created['id']}/delay", json={"scheduled_departure": "9999-12-31T23:00:00Z"})
        _problem(r, "departure_out_of_range")
        assert (await admin.get(f"/v1/flights/{created['id']}")).json()["scheduled_departure"] == \
            created["scheduled_departure"]
        assert (await admin.get("/v1/ops/summary")).status_code == 200
