"""A delay moves a flight's tokens between departure-window galleries; the ops day's bounds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from flighttoken.flights.days import EDGE, calendar_day, ops_day
from flighttoken.galleries.registry import GalleryRegistry

W1 = datetime(2026, 11, 23, 8, tzinfo=UTC)
W2 = W1 + timedelta(hours=2)


def _vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 512)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def test_moving_a_flight_moves_only_its_tokens_and_keeps_them_searchable() -> None:
    reg = GalleryRegistry()
    moving, staying = uuid.uuid4(), uuid.uuid4()
    vm, vs = _vectors(3, 1), _vectors(2, 2)
    tm = [uuid.uuid4() for _ in range(3)]
    ts = [uuid.uuid4() for _ in range(2)]
    for t, v in zip(tm, vm, strict=True):
        await reg.add(t, moving, W1, v)
    for t, v in zip(ts, vs, strict=True):
        await reg.add(t, staying, W1, v)

    assert await reg.move_flight_window(moving, W2) == 3
    assert (reg.window_size(W1), reg.window_size(W2), reg.flight_size(moving)) == (2, 3, 3)
    found = await reg.search_windows([W2], vm[1], k=1)
    assert found[0].id == str(tm[1]) and found[0].score > 0.99
    in_old_window = await reg.search_windows([W1], vm[1], k=3)
    assert not {c.id for c in in_old_window} & {str(t) for t in tm}
    assert await reg.move_flight_window(moving, W2) == 0  # already there
    await reg.remove(tm[:1])
    assert reg.window_size(W2) == 2

    # Everything leaves the old window: its gallery goes too.
    assert await reg.move_flight_window(staying, W2) == 2
    assert reg.window_size(W1) == 0 and reg.sizes_by_kind()["window"] == [4]


def test_the_ops_day_is_the_local_day_widened_by_the_edge_hours() -> None:
    noon = datetime(2026, 11, 23, 4, tzinfo=UTC)  # 12:00 in Hong Kong
    start, end = ops_day("Asia/Hong_Kong", noon)
    assert (start, end) == calendar_day("Asia/Hong_Kong", noon.astimezone(start.tzinfo).date())
    assert start == datetime(2026, 11, 22, 16, tzinfo=UTC)
    late = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 23:30 local: the next 6 hours stay in view
    assert ops_day("Asia/Hong_Kong", late)[1] == late + EDGE
