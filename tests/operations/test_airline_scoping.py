"""An airline_ops key of airline A sees airline B's flights and tokens nowhere: every route that takes
a flight or token id answers 404 exactly as for a flight that does not exist, and lists leave B out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import msgspec
import pytest

from flighttoken.devices.model import DeviceKind
from tests.operations.people import Passenger, add_key, candidates, enrol
from tests.support import journey as j
from tests.support.server import RunningService, run_service

# A valid body for each action, so that a 404 can only come from the scoping (not from validation).
BODIES = {"state": {"state": "boarding"}, "delay": {"minutes": 30}, "gate": {"gate": "77"},
          "revoke": {"reason": "other"}, "hold": {"reason": "document_check"}}


@dataclass
class World:
    svc: RunningService
    cx_ops: str
    ka_ops: str
    cx_flight: dict
    ka_flight: dict
    ka_passenger: Passenger


@pytest.fixture(scope="module")
async def world(base_settings, database_url, face_engine):
    settings = msgspec.structs.replace(base_settings, database_url=database_url)
    async with run_service(settings, engine=face_engine) as svc:
        keys = await j.make_devices(svc.services.db())
        cx_ops = await add_key(svc, DeviceKind.AIRLINE_OPS, airline="CX")
        ka_ops = await add_key(svc, DeviceKind.AIRLINE_OPS, airline="KA")
        async with svc.client(keys["admin"]) as admin, svc.client(keys["kiosk"]) as kiosk:
            cx_flight = await j.create_flight(admin, "884", "23")
            r = await admin.post("/v1/flights", json={"airline": "KA", "number": "900", "gate": "40",
                                                      "destination": "PEK", "booked": 120,
                                                      "scheduled_departure": cx_flight["scheduled_departure"]})
            assert r.status_code == 201, r.text
            ka_flight = r.json()
            people = candidates(settings.faces_dir)
            await enrol(kiosk, people, cx_flight["id"], 100)
            ka_passenger = await enrol(kiosk, people, ka_flight["id"], 200)
        yield World(svc, cx_ops, ka_ops, cx_flight, ka_flight, ka_passenger)


def _routes_with_ids(app) -> list[tuple[str, str]]:
    """Every (method, path template) under /v1 that names a flight or a token in its path."""
    out = []
    for route in app.routes:
        if not route.path.startswith("/v1/") or not ("{flight_id" in route.path or "{token_id" in route.path):
            continue
        for method in sorted(getattr(route, "methods", ())):
            if method not in ("OPTIONS", "HEAD"):
                out.append((method, route.path))
    return out


def _fill(template: str, flight_id: str, token_id: str) -> str:
    return (template.replace("{flight_id:uuid}", flight_id).replace("{token_id:uuid}", token_id)
            .replace("{flight_id}", flight_id).replace("{token_id}", token_id))


async def test_every_flight_and_token_route_answers_404_for_another_airlines_ids(world: World) -> None:
    routes = _routes_with_ids(world.svc.app)
    ka_flight, ka_token = world.ka_flight["id"], world.ka_passenger.token_id
    not_found = []
    async with world.svc.client(world.cx_ops) as cx:
        for method, template in routes:
            body = BODIES.get(template.rsplit("/", 1)[-1])
            r = await cx.request(method, _fill(template, ka_flight, ka_token), json=body)
            if r.status_code == 403:
                # Refused for the kind of key, whatever the id: that tells nothing about B's flights.
                missing = await cx.request(method, _fill(template, str(uuid.uuid4()), str(uuid.uuid4())), json=body)
                assert missing.status_code == 403, (method, template)
                continue
            assert r.status_code == 404, (method, template, r.status_code, r.text)
            missing = await cx.request(method, _fill(template, str(uuid.uuid4()), str(uuid.uuid4())), json=body)
            assert (missing.status_code, missing.json()["code"]) == (404, r.json()["code"]), (method, template)
            not_found.append((method, template))
    # The operations routes themselves must be among them (a guard refusing everything would pass above).
    expected = {("GET", "/v1/flights/{flight_id:uuid}"), ("GET", "/v1/flights/{flight_id:uuid}/progress"),
                ("POST", "/v1/flights/{flight_id:uuid}/state"), ("POST", "/v1/flights/{flight_id:uuid}/boarding"),
                ("POST", "/v1/flights/{flight_id:uuid}/close"), ("POST", "/v1/flights/{flight_id:uuid}/depart"),
                ("POST", "/v1/flights/{flight_id:uuid}/cancel"), ("POST", "/v1/flights/{flight_id:uuid}/delay"),
                ("POST", "/v1/flights/{flight_id:uuid}/gate"), ("GET", "/v1/tokens/{token_id:uuid}"),
                ("POST", "/v1/tokens/{token_id:uuid}/revoke")}
    assert expected <= set(not_found), expected - set(not_found)


async def test_nothing_of_the_other_airline_changed(world: World) -> None:
    async with world.svc.client(world.ka_ops) as ka:
        flight = (await ka.get(f"/v1/flights/{world.ka_flight['id']}")).json()
        token = (await ka.get(f"/v1/tokens/{world.ka_passenger.token_id}")).json()
    assert (flight["state"], flight["gate"], flight["scheduled_departure"]) == (
        "scheduled", "40", world.ka_flight["scheduled_departure"])
    assert token["state"] == "enrolled"


async def test_lists_lookups_and_the_dashboard_show_only_the_keys_airline(world: World) -> None:
    p = world.ka_passenger
    async with world.svc.client(world.cx_ops) as cx, world.svc.client(world.ka_ops) as ka:
        assert {f["airline"] for f in (await cx.get("/v1/flights")).json()["flights"]} == {"CX"}
        assert {f["airline"] for f in (await ka.get("/v1/flights")).json()["flights"]} == {"KA"}
        by_booking = {"booking_reference": p.booking_reference}
        by_document = {"document_number": p.document, "issuing_state": "HKG"}
        assert (await cx.get("/v1/tokens", params=by_booking)).json()["tokens"] == []
        assert (await cx.get("/v1/tokens", params=by_document)).json()["tokens"] == []
        assert [t["id"] for t in (await ka.get("/v1/tokens", params=by_booking)).json()["tokens"]] == [p.token_id]
        summary = (await cx.get("/v1/ops/summary")).json()
        assert summary["airline"] == "CX"
        assert [f["flight"] for f in summary["flights"]] == ["CX884"]
        assert {d["flight"] for d in summary["purges"]} <= {"CX884"}
        ka_summary = (await ka.get("/v1/ops/summary")).json()
        assert [(f["flight"], f["booked"], f["expected"], f["enrolled"]) for f in ka_summary["flights"]] == [
            ("KA900", 120, 120, 1)]
