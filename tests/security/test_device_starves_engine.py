"""One device key flooding the face engine (a stuck camera, a stolen key sending decode bombs) holds
at most its share of the engine queue (FLIGHTTOKEN_ENGINE_DEVICE_SHARE): beyond it, that device gets
503 engine_busy with Retry-After while another device is still admitted and answered.

The engine here is the real one behind a gate the test opens (an event, not a sleep), so captures
stay admitted for as long as the test needs to look at the queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import structlog

from flighttoken.faces.engine import FaceEngine
from flighttoken.testing import identities
from tests.support import journey as j


class GatedEngine(FaceEngine):
    """The session's real models; each admitted capture waits at ``gate`` before it is analysed."""

    def __init__(self, settings, engine: FaceEngine) -> None:
        super().__init__(settings, engine.detector, engine.recognizer)
        self.gate = asyncio.Event()
        self.entered: Counter[str] = Counter()
        self._moved = asyncio.Event()

    async def _analyse(self, image_bytes: bytes):
        self.entered[structlog.contextvars.get_contextvars().get("device_id", "")] += 1
        self._moved.set()
        await self.gate.wait()
        return await super()._analyse(image_bytes)

    async def until(self, done) -> None:
        while not done():
            self._moved.clear()
            await self._moved.wait()


@contextlib.asynccontextmanager
async def _opened_at_exit(gate: asyncio.Event):
    try:
        yield
    finally:
        gate.set()  # a failed assertion must not leave requests waiting (the service would not stop)


async def _events(svc) -> int:
    return await svc.services.db().fetchval("SELECT count(*) FROM journey_events")


async def test_one_device_flooding_the_engine_cannot_starve_another(make_service, face_engine) -> None:
    # A queue of 4, half of it per device: the flooding e-channel may hold 2 captures (and here run
    # both, so that both reach the gate).
    settings = make_service.settings(engine_queue_max=4, engine_device_share=0.5, engine_device_running=2)
    engine = GatedEngine(settings, face_engine)
    photo = identities(settings.faces_dir, min_photos=2)[0][1][0].read_bytes()
    image = {"Content-Type": "image/jpeg"}
    async with make_service(settings, engine=engine) as svc:
        keys = await j.make_devices(svc.services.db())
        before = await _events(svc)
        async with svc.client(keys["e_channel"]) as flooder, svc.client(keys["lounge"]) as other, \
                _opened_at_exit(engine.gate):
            held = [asyncio.create_task(flooder.post("/v1/identify", content=photo,
                                                     headers={**image, "X-Request-Id": f"flood-{i}"}))
                    for i in range(2)]
            await engine.until(lambda: sum(engine.entered.values()) == 2)
            (flooder_id,) = engine.entered  # both captures are the flooder's, waiting in the engine
            # Its share is full while half the queue is free: its next captures are shed at once,
            # also one that reuses the request id of a capture already admitted (whose slot a
            # request's own further captures would share).
            for request_id in ("flood-2", "flood-0"):
                more = asyncio.create_task(flooder.post("/v1/identify", content=photo,
                                                        headers={**image, "X-Request-Id": request_id}))
                entered_again = asyncio.create_task(engine.until(lambda: engine.entered[flooder_id] > 2))
                done, _ = await asyncio.wait({more, entered_again}, return_when=asyncio.FIRST_COMPLETED)
                assert more in done, f"the flooding device's capture {request_id} past its share was admitted"
                entered_again.cancel()
                shed = more.result()
                assert shed.status_code == 503, shed.text
                assert shed.json()["code"] == "engine_busy" and shed.headers["retry-after"] == "1"
            # ...while another device is admitted into the same queue.
            admitted = asyncio.create_task(other.post("/v1/identify", content=photo, headers=image))
            await engine.until(lambda: len(engine.entered) == 2)
            assert engine.admission.in_flight == 3
            engine.gate.set()
            answers = [await t for t in (*held, admitted)]
            metrics = (await other.get("/metrics")).text
        assert [r.status_code for r in answers] == [200, 200, 200], [r.text for r in answers]
        assert await _events(svc) - before == 3  # one decision each; nothing for the shed capture
        assert engine.admission.in_flight == 0
    assert "flighttoken_engine_shed_device_share_total 2.0" in metrics
