"""The bounded queue in front of the face engine: beyond FLIGHTTOKEN_ENGINE_QUEUE_MAX captures the
service answers 503 engine_busy at once, writes nothing for the shed request and stays ready."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import pytest
import structlog

from flighttoken.errors import Unavailable
from flighttoken.faces.admission import PER_REQUEST_CAPTURES, Admission
from flighttoken.faces.engine import FaceEngine
from flighttoken.testing import identities
from tests.support.journey import create_flight, document_number, enrolment, make_devices

CONCURRENT = 16


@pytest.fixture(scope="module")
def photos(base_settings) -> list[bytes]:
    people = identities(base_settings.faces_dir, min_photos=3)[:CONCURRENT]
    return [p.read_bytes() for _, ps in people for p in ps[:1]]


def _engine(face_engine: FaceEngine, settings) -> FaceEngine:
    # The session's loaded models, under this test's settings (no second model load).
    return FaceEngine(settings, face_engine.detector, face_engine.recognizer)


async def _count(svc, table: str) -> int:
    return await svc.services.db().fetchval(f"SELECT count(*) FROM {table}")


async def test_a_full_engine_queue_sheds_identifies_with_503_and_writes_nothing_for_them(
        make_service, face_engine, photos) -> None:
    settings = make_service.settings(engine_queue_max=1)
    engine = _engine(face_engine, settings)
    assert engine.admission.limit == 1
    async with make_service(settings, engine=engine) as svc:
        keys = await make_devices(svc.services.db())
        async with svc.client(keys["admin"]) as admin:
            await create_flight(admin, "884", "23")
        events_before = await _count(svc, "journey_events")
        async with svc.client(keys["e_channel"]) as client:
            answers = await asyncio.gather(*(
                client.post("/v1/identify", content=photo, headers={"Content-Type": "image/jpeg"})
                for photo in photos))
            statuses = sorted(r.status_code for r in answers)
            shed = [r for r in answers if r.status_code == 503]
            decided = [r for r in answers if r.status_code == 200]
            assert shed and decided, statuses
            assert len(shed) + len(decided) == len(answers), statuses  # no other answer, no 5xx but 503
            for r in shed:
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.headers["retry-after"] == "1"
                assert r.json()["code"] == "engine_busy"
            assert all(r.json()["decision"] in ("proceed", "refer") for r in decided)
            # One journey event per decision; none for a shed request.
            assert await _count(svc, "journey_events") - events_before == len(decided)
            assert (await client.get("/health/ready")).status_code == 200
            # Once the queue has drained, the same capture is answered again.
            again = await client.post("/v1/identify", content=photos[0], headers={"Content-Type": "image/jpeg"})
            assert again.status_code == 200, again.text
            metrics = (await client.get("/metrics")).text
        assert f"flighttoken_engine_shed_total {float(len(shed))}" in metrics
        assert "flighttoken_engine_queue 0.0" in metrics
        assert "flighttoken_engine_queue_max 1.0" in metrics
        assert engine.admission.in_flight == 0


async def test_an_enrolment_is_admitted_as_a_whole_and_a_shed_one_enrols_nothing(
        base_settings, make_service, face_engine, photos) -> None:
    settings = make_service.settings(engine_queue_max=1)
    engine = _engine(face_engine, settings)
    people = identities(base_settings.faces_dir, min_photos=3)[CONCURRENT:CONCURRENT + 10]
    async with make_service(settings, engine=engine) as svc:
        keys = await make_devices(svc.services.db())
        async with svc.client(keys["admin"]) as admin:
            flight = await create_flight(admin, "885", "24")
        async with svc.client(keys["kiosk"]) as kiosk:
            # Three captures analysed at once on an idle engine with room for one: they share a slot.
            _, three = people[0]
            body = enrolment(three[0], flight["id"], document_number=document_number(1))
            body["captures"] = [base64.b64encode(p.read_bytes()).decode() for p in three[:3]]
            first = await kiosk.post("/v1/enrolments", json=body)
            assert first.status_code == 201, first.text
            tokens_before, consents_before = await _count(svc, "tokens"), await _count(svc, "consents")
            answers = await asyncio.gather(*(
                kiosk.post("/v1/enrolments", json=enrolment(ps[0], flight["id"], document_number=document_number(i)))
                for i, (_, ps) in enumerate(people[1:], start=2)))
        created = [r for r in answers if r.status_code == 201]
        shed = [r for r in answers if r.status_code == 503]
        assert shed and len(created) + len(shed) == len(answers), [r.status_code for r in answers]
        assert all(r.json()["code"] == "engine_busy" for r in shed)
        assert await _count(svc, "tokens") - tokens_before == len(created)
        assert await _count(svc, "consents") - consents_before == len(created)


def test_the_queue_stays_bounded_whatever_request_ids_clients_send() -> None:
    admission = Admission(2)
    with contextlib.ExitStack() as held, structlog.contextvars.bound_contextvars(request_id="same"):
        held.enter_context(admission.admit())
        held.enter_context(admission.admit())  # the limit is reached...
        for _ in range(PER_REQUEST_CAPTURES - 2):
            held.enter_context(admission.admit())  # ...but one request's captures share its slot
        assert admission.in_flight == PER_REQUEST_CAPTURES
        with pytest.raises(Unavailable):  # up to a bound: a reused request id gets no more
            held.enter_context(admission.admit())
        with structlog.contextvars.bound_contextvars(request_id="other"), pytest.raises(Unavailable):
            held.enter_context(admission.admit())
    assert (admission.in_flight, admission.admitted, admission.shed) == (0, PER_REQUEST_CAPTURES, 2)
    without_id = Admission(1)
    with without_id.admit(), pytest.raises(Unavailable) as refused, without_id.admit():
        pass
    assert refused.value.code == "engine_busy" and refused.value.headers == {"Retry-After": "1"}
    assert without_id.in_flight == 0 and without_id.admitted == 1
