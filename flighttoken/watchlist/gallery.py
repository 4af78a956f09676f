"""The watchlist in memory: every live subject template in one exact-search gallery.

Ids are ``"<subject id>/<photo number>"``: a subject enrolled from several photos has one entry per
photo and scores as its best one. Searches are exact up to ``EXACT_MAX`` templates (a watchlist
is tuned for few misses, so no approximate search may drop a candidate). Expiry is checked at
search time, so a subject past its date never matches even before the sweep deletes it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from datetime import datetime

import msgspec
import numpy as np

from flighttoken.executor import run_blocking
from flighttoken.galleries.index import Gallery
from flighttoken.galleries.params import IndexParams

EXACT_MAX = 16_384
_PARAMS = IndexParams(exact_max=EXACT_MAX)


class WatchlistHit(msgspec.Struct, frozen=True):
    subject_id: uuid.UUID
    score: float


def _key(subject_id: uuid.UUID, n: int) -> str:
    return f"{subject_id}/{n}"


def _subject(key: str) -> uuid.UUID:
    return uuid.UUID(key.split("/", 1)[0])


def _new_gallery(items: list[tuple[str, np.ndarray]]) -> Gallery:
    return Gallery.build(items, _PARAMS)


class WatchlistGallery:
    def __init__(self) -> None:
        self._gallery = Gallery(_PARAMS)
        self._expires: dict[uuid.UUID, datetime] = {}
        self._photos: dict[uuid.UUID, list[str]] = {}
        self._writes = asyncio.Lock()

    def __len__(self) -> int:
        """Subjects held (expired ones included until the sweep removes them)."""
        return len(self._expires)

    def __contains__(self, subject_id: uuid.UUID) -> bool:
        return subject_id in self._expires

    async def replace(self, items: Iterable[tuple[uuid.UUID, int, np.ndarray, datetime]]) -> None:
        """Swap in a gallery built from (subject, photo number, vector, expiry) rows, in one step."""
        entries = list(items)
        gallery = await run_blocking(_new_gallery, [(_key(s, n), v) for s, n, v, _ in entries])
        photos: dict[uuid.UUID, list[str]] = {}
        for s, n, _, _ in entries:
            photos.setdefault(s, []).append(_key(s, n))
        async with self._writes:
            self._gallery = gallery
            self._expires = {s: e for s, _, _, e in entries}
            self._photos = photos

    async def add(self, subject_id: uuid.UUID, vectors: list[tuple[int, np.ndarray]], expires_at: datetime) -> None:
        keys = [_key(subject_id, n) for n, _ in vectors]
        async with self._writes:
            await run_blocking(self._gallery.add, [(k, v) for k, (_, v) in zip(keys, vectors, strict=True)])
            self._photos[subject_id] = keys
            self._expires[subject_id] = expires_at

    async def remove(self, subject_ids: Iterable[uuid.UUID]) -> None:
        async with self._writes:
            keys = []
            for s in subject_ids:
                keys += self._photos.pop(s, [])
                self._expires.pop(s, None)
            if keys:
                await run_blocking(self._gallery.remove, keys)

    async def search(self, vector: np.ndarray, now: datetime, k: int = 8) -> list[WatchlistHit]:
        """Live subjects by best score, best first. Always one executor hop, even when empty, so a
        screened capture costs the same whether or not the watchlist holds anyone."""
        gallery, expires = self._gallery, self._expires
        candidates = await run_blocking(_search, gallery, vector, k)
        best: dict[uuid.UUID, float] = {}
        for key, score in candidates:
            s = _subject(key)
            expiry = expires.get(s)
            if expiry is not None and expiry > now and score > best.get(s, -2.0):
                best[s] = score
        return [WatchlistHit(s, sc) for s, sc in sorted(best.items(), key=lambda x: x[1], reverse=True)]

    def subjects(self) -> list[uuid.UUID]:
        return list(self._expires)

    def expired(self, now: datetime) -> list[uuid.UUID]:
        return [s for s, e in self._expires.items() if e <= now]


def _search(gallery: Gallery, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
    if len(gallery) == 0:
        return []
    return [(c.id, c.score) for c in gallery.search(vector, k)]
