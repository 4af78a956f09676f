"""DCS messages over real HTTP and real PostgreSQL, the real face models at the gate, and a real
airline receiver on a loopback port: webhooks in the admin API, signed events delivered at least
once (exactly once after dedupe) through a receiver that fails requests, dead letters and re-drive.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flighttoken.dcs import signing
from flighttoken.devices.registry import add_device
from flighttoken.testing import RunningService, identities
from flighttoken.vocabulary import DeviceKind
from tests.dcs.receiver import Receiver, running_receiver
from tests.support import journey as j
from tests.support.concurrency import within
from tests.support.world import World

pytestmark = pytest.mark.slow
DELIVERY_S = 20.0  # generous: a loaded 2-core machine; the deliverer polls every 0.1 s here


@dataclass(kw_only=True)
class DcsWorld(World):
    cx: Receiver
    ka: Receiver
    secret: str
    photos: list[Path]
    enrolled: list[dict]


async def _set_webhook(client, airline: str, url: str, **extra) -> dict:
    r = await client.put(f"/v1/airlines/{airline}/webhook", json={"url": url, **extra})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
async def world(make_service):
    # The CX receiver fails each event's first delivery: every event is retried, none is lost.
    settings = make_service.settings(dcs_delivery_interval_s=0.1, dcs_backoff_base_s=0.05, dcs_backoff_cap_s=0.2,
                                     dcs_max_attempts=4, dcs_timeout_s=2.0, dcs_lease_s=5.0)
    async with (running_receiver(fail_first=True) as cx, running_receiver(["fail"] * 100) as ka,
                make_service(settings) as svc):
        keys = await j.make_devices(svc.services.db())
        async with svc.services.db().acquire() as conn:
            for airline in ("CX", "KA"):
                _, keys[f"ops_{airline}"] = await add_device(conn, name=f"ops-{airline}", kind=DeviceKind.AIRLINE_OPS,
                                                             airline=airline)
        async with svc.client(keys["admin"]) as admin:
            secret = (await _set_webhook(admin, "CX", cx.url))["secret"]
            await _set_webhook(admin, "KA", ka.url)
            flight = await j.create_flight(admin, "800", "23", international=False)
        enrolled, photos = [], []
        async with svc.client(keys["kiosk"]) as kiosk:
            for _, (photo, *_) in identities(settings.faces_dir):
                number = j.document_number(len(enrolled))
                body = j.enrolment(photo, flight["id"], document_number=number, lounge=False,
                                   seat=f"{len(enrolled) + 1}A")
                r = await kiosk.post("/v1/enrolments", json=body)
                if r.status_code == 201:
                    enrolled.append({**r.json(), "document_number": number,
                                     "booking_reference": body["booking"]["booking_reference"]})
                    photos.append(photo)
                if len(enrolled) == 4:
                    break
        yield DcsWorld(svc=svc, keys=keys, flights={"cx": flight}, cx=cx, ka=ka, secret=secret, photos=photos,
                       enrolled=enrolled)


def _verified(world: DcsWorld, kind: str) -> list[dict]:
    """The accepted events of a kind, each checked as an airline checks it."""
    events = []
    for d in world.cx.accepted().values():
        assert signing.verify(world.secret, d.body, d.headers[signing.SIGNATURE_HEADER.lower()])
        assert d.event["id"] == d.event_id and d.headers[signing.EVENT_TYPE_HEADER.lower()] == d.event["type"]
        if d.event["type"] == kind:
            events.append(d.event)
    return events


async def test_the_secret_is_shown_once_and_only_admins_set_webhooks(world: DcsWorld) -> None:
    svc: RunningService = world.svc
    assert world.secret.startswith("whsec_")
    async with svc.client(world.keys["admin"]) as admin:
        r = await admin.get("/v1/airlines/CX/webhook")
        assert r.status_code == 200 and r.json()["secret"] is None and r.json()["url"] == world.cx.url
        for bad in ("ftp://dcs.example.com/x", "http://user:pw@dcs.example.com/x", "http://[::1/x",
                    "https://dcs.example.com:99999/x"):
            r = await admin.put("/v1/airlines/QF/webhook", json={"url": bad})
            assert (r.status_code, r.json()["code"]) == (400, "invalid_webhook_url")
        r = await admin.put("/v1/airlines/cx!/webhook", json={"url": world.cx.url})
        assert (r.status_code, r.json()["code"]) == (400, "invalid_airline")
        assert (await admin.get("/v1/airlines/QF/webhook")).status_code == 404  # nothing was stored
        # Changing the URL keeps the secret (not shown again); rotating shows the new one once.
        again = await _set_webhook(admin, "QF", "https://dcs.example.com/a")
        assert again["secret"] and (await _set_webhook(admin, "QF", "https://dcs.example.com/b"))["secret"] is None
        rotated = (await _set_webhook(admin, "QF", "https://dcs.example.com/b", rotate_secret=True))["secret"]
        assert rotated and rotated != again["secret"]
        assert (await admin.delete("/v1/airlines/QF/webhook")).status_code == 204
    async with svc.client(world.keys["ops_CX"]) as ops:
        r = await ops.get("/v1/airlines/CX/webhook")
        assert r.status_code == 200 and r.json()["secret"] is None
        assert (await ops.get("/v1/airlines/KA/webhook")).json()["code"] == "webhook_not_found"
        assert (await ops.put("/v1/airlines/CX/webhook", json={"url": "https://evil.example.com/"})).status_code == 403
    async with svc.client(world.keys["gate23"]) as gate:
        assert (await gate.get("/v1/airlines/CX/webhook")).status_code == 403
    async with svc.client(world.keys["admin"]) as admin:
        assert (await admin.get("/v1/airlines/CX/webhook")).json()["url"] == world.cx.url  # unchanged


async def test_boarding_closing_opting_out_and_revoking_reach_the_dcs_exactly_once(world: DcsWorld) -> None:
    svc, flight, p = world.svc, world.flights["cx"], world.enrolled
    assert len(p) == 4
    async with svc.client(world.keys["kiosk"]) as kiosk:  # p[3] opts out before boarding, then again
        for _ in range(2):
            r = await kiosk.post("/v1/opt-outs", json={"booking_reference": p[3]["booking_reference"], "document": {
                "type": "P", "number": p[3]["document_number"], "issuing_state": "HKG"}})
            assert r.status_code == 200, r.text
    async with svc.client(world.keys["admin"]) as admin:
        assert (await admin.post(f"/v1/flights/{flight['id']}/boarding")).status_code == 200
    async with svc.client(world.keys["gate23"]) as gate:
        for i in (0, 1):
            d = await j.identify(gate, world.photos[i])
            assert (d["decision"], d["token_id"]) == ("proceed", p[i]["token_id"])
    async with svc.client(world.keys["admin"]) as admin:
        assert (await admin.post(f"/v1/flights/{flight['id']}/close")).status_code == 200
        r = await admin.post(f"/v1/tokens/{p[2]['token_id']}/revoke", json={"reason": "offloaded"})
        assert r.status_code == 200, r.text

    await within(DELIVERY_S, lambda: len(world.cx.accepted()) == 5)
    assert any(d.answered == 500 for d in world.cx.deliveries)  # some deliveries failed and were retried
    for event_id in world.cx.accepted():  # a retry is the same event, byte for byte (bar the signature time)
        bodies = {d.body for d in world.cx.deliveries if d.event_id == event_id}
        assert len(bodies) == 1
    boarded = _verified(world, "passenger.boarded")
    assert sorted(e["data"]["token_id"] for e in boarded) == sorted([p[0]["token_id"], p[1]["token_id"]])
    for e in boarded:
        data = e["data"]
        assert data["method"] == "biometric" and data["flight"] == "CX800" and data["gate"] == "23"
        assert data["booking_reference"] in {p[0]["booking_reference"], p[1]["booking_reference"]}
        assert datetime.fromisoformat(data["boarded_at"]) > datetime.now(UTC) - timedelta(minutes=10)
    for d in world.cx.deliveries:  # no document number, no face
        assert b"K0000000" not in d.body and b"template" not in d.body
    (closed,) = _verified(world, "boarding.closed")
    assert closed["data"]["boarded"] == 2 and closed["data"]["flight_state"] == "closed"
    assert [t["token_id"] for t in closed["data"]["not_boarded"]] == [p[2]["token_id"]]  # p[3] opted out
    (opted_out,) = _verified(world, "passenger.opted_out")
    assert opted_out["data"]["token_id"] == p[3]["token_id"] and opted_out["data"]["state"] == "revoked"
    (revoked,) = _verified(world, "token.revoked")
    assert revoked["data"] == {**revoked["data"], "token_id": p[2]["token_id"], "reason": "offloaded",
                               "state_before": "enrolled", "seat": "3A", "booking_reference": p[2]["booking_reference"]}


async def test_an_undeliverable_event_is_dead_lettered_listed_and_re_driven(world: DcsWorld) -> None:
    svc = world.svc
    departure = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0).isoformat()
    async with svc.client(world.keys["admin"]) as admin:
        r = await admin.post("/v1/flights", json={"airline": "KA", "number": "12", "gate": "24", "destination": "TPE",
                                                  "scheduled_departure": departure, "international": False})
        flight_id = r.json()["id"]
        await admin.post(f"/v1/flights/{flight_id}/boarding")
        await admin.post(f"/v1/flights/{flight_id}/close")

        async def dead() -> list[dict]:
            r = await admin.get("/v1/dcs/dead-letters", params={"airline": "KA"})
            assert r.status_code == 200, r.text
            return r.json()["events"]

        listed: list[dict] = []
        for _ in range(int(DELIVERY_S * 10)):
            if listed := await dead():
                break
            await asyncio.sleep(0.1)
        (event,) = listed
        assert event["type"] == "boarding.closed" and event["attempts"] == 4 and event["last_error"] == "HTTP 500"
        assert event["data"]["flight_id"] == flight_id
        assert len(world.ka.deliveries) == 4  # exactly max attempts, then it stopped
        async with svc.client(world.keys["ops_CX"]) as ops:  # another airline's dead letters don't exist for it
            r = await ops.get("/v1/dcs/dead-letters")
            assert r.status_code == 200 and r.json()["events"] == []
            assert (await ops.post(f"/v1/dcs/dead-letters/{event['id']}/redrive")).status_code == 403
        assert (await admin.post(f"/v1/dcs/dead-letters/{uuid.uuid4()}/redrive")).json()["code"] == \
            "dead_letter_not_found"
        world.ka.plan.clear()  # the airline fixed its DCS
        assert (await admin.post(f"/v1/dcs/dead-letters/{event['id']}/redrive")).status_code == 204
        await within(DELIVERY_S, lambda: event["id"] in world.ka.accepted())
        assert await dead() == []
        metrics = (await admin.get("/metrics")).text
        assert 'flighttoken_dcs_outbox_events{status="dead"} 0.0' in metrics


