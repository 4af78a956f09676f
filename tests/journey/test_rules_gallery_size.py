"""The service decides with the threshold of the gallery it actually searched (issue 8), end to end
over real HTTP, real PostgreSQL and the real face models."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pytest

from flighttoken.devices.model import DeviceKind
from flighttoken.journey import identify as identify_module
from flighttoken.journey import rules
from tests.support import journey as j
from tests.support.faces import identities
from tests.support.server import RunningService, run_service

N_PASSENGERS = 6


@dataclass
class World:
    svc: RunningService
    keys: dict[str, str]
    flight: dict
    probes: list  # another photo of each enrolled passenger


@pytest.fixture(scope="module")
async def world(base_settings, database_url, face_engine):
    settings = msgspec.structs.replace(base_settings, database_url=database_url)
    async with run_service(settings, engine=face_engine) as svc:
        keys = await j.make_devices(svc.services.db())
        async with svc.client(keys["admin"]) as admin:
            flight = await j.create_flight(admin, "900", "23")
        probes = []
        async with svc.client(keys["kiosk"]) as kiosk:
            for i, (_, photos) in enumerate(identities(settings.faces_dir, min_photos=4)):
                if not _clear_pair(face_engine, photos[0], photos[1]):
                    continue
                r = await kiosk.post("/v1/enrolments", json=j.enrolment(photos[0], flight["id"],
                                                                        document_number=j.document_number(i)))
                if r.status_code == 201:
                    probes.append(photos[1])
                if len(probes) == N_PASSENGERS:
                    break
        yield World(svc, keys, flight, probes)


def _clear_pair(engine, enrol_photo, probe_photo) -> bool:
    """A pair any threshold under test should accept: good captures, one face, a strong match."""
    a, b = engine.analyse_sync(enrol_photo.read_bytes()), engine.analyse_sync(probe_photo.read_bytes())
    if not (a.quality_ok and b.quality_ok) or a.tailgating or b.tailgating:
        return False
    return float(a.template.vector @ b.template.vector) >= 0.6


@pytest.fixture
def sizes(monkeypatch) -> list[tuple[DeviceKind, int]]:
    """Every (touchpoint, gallery size) the service asks a threshold for."""
    seen: list[tuple[DeviceKind, int]] = []

    def spy(settings, touchpoint, gallery_size):
        seen.append((touchpoint, gallery_size))
        return rules.threshold_for(settings, touchpoint, gallery_size)

    monkeypatch.setattr(identify_module, "threshold_for", spy)
    return seen


async def _score(world: World, event_id: int) -> float:
    async with world.svc.services.db().acquire() as conn:
        return await conn.fetchval("SELECT score FROM journey_events WHERE id = $1", event_id)


async def test_the_e_channel_threshold_follows_the_window_gallery_size(world: World, sizes) -> None:
    services = world.svc.services
    default = services.settings
    async with world.svc.client(world.keys["e_channel"]) as e_channel:
        # A tail so heavy that, searching these few faces, the threshold sits just above the mate's score.
        services.settings = msgspec.structs.replace(default, impostor_tail_score_1e6=0.99)
        try:
            strict = await j.identify(e_channel, world.probes[0])
        finally:
            services.settings = default
        assert sizes == [(DeviceKind.E_CHANNEL, N_PASSENGERS)]
        assert (strict["decision"], strict["reason"]) == ("refer", "no_match")
        score = await _score(world, strict["event_id"])
        assert score < rules.threshold_for(msgspec.structs.replace(default, impostor_tail_score_1e6=0.99),
                                           DeviceKind.E_CHANNEL, N_PASSENGERS)
        # The shipped tail: a few faces leave the floor in charge, and the same capture clears.
        cleared = await j.identify(e_channel, world.probes[0])
    assert rules.threshold_for(default, DeviceKind.E_CHANNEL, N_PASSENGERS) == default.e_channel_threshold
    assert (cleared["decision"], cleared["reason"]) == ("proceed", "matched"), score


async def test_the_gate_uses_the_size_of_its_boarding_flights(world: World, sizes) -> None:
    async with world.svc.client(world.keys["admin"]) as admin:
        r = await admin.post(f"/v1/flights/{world.flight['id']}/state", json={"state": "boarding"})
        assert r.status_code == 200
    async with world.svc.client(world.keys["gate23"]) as gate:
        d = await j.identify(gate, world.probes[0])
    assert (d["decision"], d["reason"]) == ("proceed", "matched")
    assert sizes == [(DeviceKind.GATE, N_PASSENGERS)]
