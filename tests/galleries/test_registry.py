"""The registry: small galleries (a gate's flights) are searched on the event loop, large ones in
the executor; both give the same answers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from flighttoken.galleries import registry as registry_module
from flighttoken.galleries.params import GalleryParams
from flighttoken.galleries.registry import GalleryRegistry

WINDOW = datetime(2026, 11, 23, 8, tzinfo=UTC)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every executor hop the registry makes (and still makes it)."""
    seen: list[str] = []
    real = registry_module.run_blocking

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(registry_module, "run_blocking", counting)
    return seen


async def test_small_searches_stay_on_the_loop_and_large_ones_do_not(hops: list[str]) -> None:
    rng = np.random.default_rng(1)
    reg = GalleryRegistry(GalleryParams(exact_max=60))
    flights = [uuid.uuid4(), uuid.uuid4()]
    vectors = unit(rng.standard_normal((70, 512)))
    tokens = [uuid.uuid4() for _ in range(70)]
    for i, (t, v) in enumerate(zip(tokens, vectors, strict=True)):
        await reg.add(t, flights[i % 2], WINDOW, v)  # two flights of 35, one window of 70
    hops.clear()

    found = await reg.search_flights(flights, vectors[11], k=2)  # 70 faces in total: past exact_max
    assert found[0].id == str(tokens[11]) and hops == ["search_all"]
    hops.clear()
    found = await reg.search_flights(flights[:1], vectors[10], k=2)  # 35 faces: on the loop
    assert found[0].id == str(tokens[10]) and found[0].score == pytest.approx(1.0, abs=1e-5)
    assert hops == []
    assert await reg.search_flights(flights[1:], vectors[10], k=2) != []  # the other flight: not the face
    assert (await reg.search_flights(flights[1:], vectors[10], k=1))[0].id != str(tokens[10])
    assert hops == []

    window = await reg.search_windows([WINDOW], vectors[42], k=2)  # 70 faces: through the executor
    assert window[0].id == str(tokens[42]) and hops == ["search_all"]


async def test_a_write_in_progress_sends_a_small_search_to_the_executor(hops: list[str]) -> None:
    rng = np.random.default_rng(2)
    reg = GalleryRegistry()
    flight, token = uuid.uuid4(), uuid.uuid4()
    v = unit(rng.standard_normal(512))
    await reg.add(token, flight, WINDOW, v)
    hops.clear()
    gallery = reg._flights[flight]
    gallery._lock._writers_waiting += 1  # a writer queued: new readers must not overtake it
    search = asyncio.ensure_future(reg.search_flights([flight], v, k=1))
    try:
        for _ in range(3):  # let the search task run up to its first real wait
            await asyncio.sleep(0)
        assert hops == ["search_all"] and not search.done()  # waiting for the writer, off the loop
    finally:
        with gallery._lock._cond:
            gallery._lock._writers_waiting -= 1
            gallery._lock._cond.notify_all()
    assert (await search)[0].id == str(token)


async def test_a_dropped_flight_takes_no_more_faces() -> None:
    """A flight leaves the galleries for good (closed, departed, cancelled, purged): an add arriving
    after the drop (an enrolment committed just before a purge) is refused, other flights unaffected."""
    rng = np.random.default_rng(2)
    reg = GalleryRegistry()
    closed, still_open = uuid.uuid4(), uuid.uuid4()
    v = unit(rng.standard_normal((3, 512)))
    assert await reg.add(uuid.uuid4(), closed, WINDOW, v[0]) is True
    assert await reg.drop_flight(closed) == 1
    late = uuid.uuid4()
    assert await reg.add(late, closed, WINDOW, v[1]) is False
    assert not reg.contains(late) and reg.flight_size(closed) == 0 and reg.window_size(WINDOW) == 0
    assert await reg.add(uuid.uuid4(), still_open, WINDOW, v[2]) is True
    assert reg.window_size(WINDOW) == 1
