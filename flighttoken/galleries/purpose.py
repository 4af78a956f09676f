"""Purpose-bound galleries (issue 19): where a token's face belongs besides its wide galleries.

Each touchpoint kind searches only the people it may admit now, keyed like the gallery it searches
(a flight for gates, a departure window for e-channels and lounges), so its threshold is set for a
smaller N. Membership is the policy table's ``admits`` (decisions/policy.py) applied to the token's
``Standing``: a pure function, so every instance places a token the same way. This module says where
a token belongs and builds purpose galleries in bulk; the registry (registry.py) keeps them current.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from flighttoken.decisions.policy import TOUCHPOINTS, Searches, Standing
from flighttoken.galleries.index import Gallery
from flighttoken.galleries.params import IndexParams
from flighttoken.vocabulary import DeviceKind, TokenState

PurposeKey = uuid.UUID | datetime
"""A flight id (touchpoints that search flights) or a window start (those that search windows)."""
Place = tuple[DeviceKind, PurposeKey]
PurposeGalleries = dict[DeviceKind, dict[PurposeKey, Gallery]]


class Row(Protocol):
    """A row by column name: an asyncpg ``Record`` (not a ``Mapping``) or a dict."""

    def __getitem__(self, key: str, /) -> Any: ...


def standing_of(row: Row) -> Standing:
    """A token's standing from a row carrying ``state``, ``international`` and ``lounge_eligible``."""
    return Standing(TokenState(row["state"]), row["international"], row["lounge_eligible"])


def purpose_key(kind: DeviceKind, home: tuple[uuid.UUID, datetime]) -> PurposeKey:
    return home[0] if TOUCHPOINTS[kind].searches is Searches.FLIGHTS else home[1]


def places(home: tuple[uuid.UUID, datetime] | None, standing: Standing | None) -> set[Place]:
    """The purpose galleries a token living at ``home`` (flight, window) belongs in."""
    if home is None or standing is None:
        return set()
    return {(kind, purpose_key(kind, home)) for kind, policy in TOUCHPOINTS.items() if policy.admits(standing)}


def empty() -> PurposeGalleries:
    return {kind: {} for kind in TOUCHPOINTS}


# A purpose gallery holding at least this share of its wide gallery's faces is a copy of it with
# the others removed (a memory copy and one graph rewrite, ~0.1 s at 42,000) rather than a graph
# built again (~4 s of CPU): a window's e-channel gallery is most of the window until people clear.
# The removed stay as tombstones the graph routes through, as when a flight leaves a window.
SHARE_TO_COPY = 0.75


def build_purpose_galleries(rows: Iterable[tuple[uuid.UUID, uuid.UUID, datetime, np.ndarray]],
                            standing: dict[str, Standing], params: IndexParams | None = None,
                            wide: dict[PurposeKey, Gallery] | None = None) -> PurposeGalleries:
    """Every purpose gallery from (token, flight, window, vector) rows and each token's standing
    (a token without one is in none). Blocking, like ``build.build_galleries``. ``wide``: the flight
    and window galleries built from the same rows, by flight id and window start; a purpose gallery
    that is (most of) one of them is copied from it (``SHARE_TO_COPY``)."""
    per_place: dict[Place, list[tuple[str, np.ndarray]]] = {}
    for token_id, flight_id, window, vector in rows:
        key = str(token_id)
        for place in places((flight_id, window), standing.get(key)):
            per_place.setdefault(place, []).append((key, vector))
    built = empty()
    for (kind, key), items in per_place.items():
        built[kind][key] = _copied((wide or {}).get(key), items) or Gallery.build(items, params)
    return built


def _copied(source: Gallery | None, items: list[tuple[str, np.ndarray]]) -> Gallery | None:
    """``source`` less the ids not in ``items``, if ``items`` are (most of) its faces; else None.
    Only ids move: ``source`` was built from the same rows, so the vectors are the same."""
    if source is None or len(items) < SHARE_TO_COPY * len(source):
        return None
    members = {id_ for id_, _ in items}
    present = set(source.ids())
    if not members <= present:
        return None
    copy = source.copy()
    copy.remove(present - members)
    return copy


def swap(targets: list[Gallery], sources: list[Gallery], key: str, vector: np.ndarray | None) -> None:
    """Add ``key`` to ``targets`` first, then take it out of ``sources`` (overwriting its rows, see
    ``Gallery.remove``). Blocking."""
    if vector is not None:
        for g in targets:
            g.add([(key, vector)])
    for g in sources:
        g.remove([key])
