"""Build the flight and window galleries in one go from decrypted templates (the start-up rebuild,
``loader.py``); the purpose galleries are built by ``purpose.py``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import numpy as np

from flighttoken.galleries.index import Gallery
from flighttoken.galleries.params import GalleryParams

__all__ = ["build_galleries"]


def build_galleries(rows: Iterable[tuple[uuid.UUID, uuid.UUID, datetime, np.ndarray]],
                    params: GalleryParams | None = None) -> tuple[
        dict[uuid.UUID, Gallery], dict[datetime, Gallery], dict[str, tuple[uuid.UUID, datetime]]]:
    """Build every gallery from (token, flight, window, vector) rows. Blocking.

    Boarded tokens stay in both galleries until the flight closes: a second boarding or a late
    e-channel visit is then recognised and refused, and a token swap (their face enrolled under
    another document) is caught at the kiosk.

    Flights (up to ``exact_max`` faces) are plain copies, made while the windows build; a large
    window builds its graph on ``params.threads()`` threads, one window after the other.
    """
    params = params or GalleryParams()
    per_flight: dict[uuid.UUID, list[tuple[str, np.ndarray]]] = {}
    per_window: dict[datetime, list[tuple[str, np.ndarray]]] = {}
    homes: dict[str, tuple[uuid.UUID, datetime]] = {}
    for token_id, flight_id, window, vector in rows:
        key = str(token_id)
        per_flight.setdefault(flight_id, []).append((key, vector))
        per_window.setdefault(window, []).append((key, vector))
        homes[key] = (flight_id, window)
    # The windows' graphs release the GIL while they build; the flights' copies (Python, holding
    # it) are made meanwhile rather than after them.
    with ThreadPoolExecutor(1, thread_name_prefix="gallery-windows") as pool:
        windows = pool.submit(lambda: {w: Gallery.build(items, params) for w, items in per_window.items()})
        flights = {f: Gallery.build(items, params) for f, items in per_flight.items()}
        return flights, windows.result(), homes
