"""The running set of galleries: one per open flight, one per departure window, holding every live
token (the duplicate check at enrolment, the audit-only misuse search), and the purpose galleries
(purpose.py: per touchpoint kind, only the people it may admit now). Rebuilt from PostgreSQL at
start-up and kept in step with enrolments, decisions, revocations and flight closures.

Structure changes (create or drop a gallery) happen on the event loop under one asyncio lock;
hnswlib writes and searches go through the executor. A gallery is published in the dicts only once
it is complete, so no caller ever searches a half-built index. How the galleries are built at
start-up is ``build.py``; how several are searched as one, ``search.py``; their parameters, ``params.py``.
Over ~300 lines as one class: every structure change must hold the one lock over the same dicts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from datetime import datetime

import numpy as np
import structlog

from flighttoken.decisions.policy import Standing
from flighttoken.executor import run_blocking
from flighttoken.galleries.index import Candidate, Gallery
from flighttoken.galleries.params import GalleryParams
from flighttoken.galleries.purpose import Place, PurposeGalleries, PurposeKey, empty, places, purpose_key, swap
from flighttoken.galleries.search import search_all, search_all_now
from flighttoken.galleries.writes import add_to, move, remove_from
from flighttoken.vocabulary import DeviceKind

log = structlog.get_logger(__name__)


class GalleryRegistry:
    def __init__(self, params: GalleryParams | None = None) -> None:
        self.params = params or GalleryParams()
        self._flights: dict[uuid.UUID, Gallery] = {}
        self._windows: dict[datetime, Gallery] = {}
        # token id → (flight, window): where a token lives, so removal needs no database read.
        self._homes: dict[str, tuple[uuid.UUID, datetime]] = {}
        # The purpose galleries and what places a token in them (galleries/purpose.py).
        self._purpose: PurposeGalleries = empty()
        self._standing: dict[str, Standing] = {}
        # Flights dropped for good (boarding closed, departed, cancelled, purged: none reopens, see
        # flights/model.py TRANSITIONS). An add for one is refused, so an enrolment that committed
        # before a purge but adds its face after it cannot leave that face searchable: whichever of
        # the add and the drop takes ``_structure`` first, the face ends up out. One UUID per closed
        # flight this process has seen: a few thousand a day.
        self._closed: set[uuid.UUID] = set()
        self._structure = asyncio.Lock()

    # ---- reads -------------------------------------------------------------------------------

    def sizes(self) -> dict[str, int]:
        return {"flights": len(self._flights), "windows": len(self._windows), "tokens": len(self._homes),
                "largest_window": max((len(g) for g in self._windows.values()), default=0)}

    def flight_size(self, flight_id: uuid.UUID) -> int:
        g = self._flights.get(flight_id)
        return len(g) if g else 0

    def sizes_by_kind(self) -> dict[str, list[int]]:
        """Live faces in every flight gallery and every window gallery (for metrics)."""
        return {"flight": [len(g) for g in self._flights.values()],
                "window": [len(g) for g in self._windows.values()],
                **{kind.value: [len(g) for g in by_key.values()] for kind, by_key in self._purpose.items()}}

    def purpose_size(self, kind: DeviceKind, keys: Iterable[PurposeKey]) -> int:
        """Faces ``kind``'s purpose galleries hold under ``keys`` (flights or window starts)."""
        by_key = self._purpose[kind]
        return sum(len(by_key[k]) for k in keys if k in by_key)

    def purposes(self, token_id: uuid.UUID) -> set[DeviceKind]:
        """The touchpoint kinds whose purpose galleries hold this token now."""
        key = str(token_id)
        home = self._homes.get(key)
        if home is None:
            return set()
        return {kind for kind, by_key in self._purpose.items()
                if (g := by_key.get(purpose_key(kind, home))) is not None and g.contains(key)}

    def standing(self, token_id: uuid.UUID) -> Standing | None:
        return self._standing.get(str(token_id))

    def standings(self) -> dict[uuid.UUID, Standing]:
        """Snapshot: every token in memory with a standing. Used by reconciliation."""
        return {uuid.UUID(t): st for t, st in self._standing.items()}

    def window_size(self, start: datetime) -> int:
        g = self._windows.get(start)
        return len(g) if g else 0

    def contains(self, token_id: uuid.UUID) -> bool:
        return str(token_id) in self._homes

    def template(self, token_id: uuid.UUID) -> np.ndarray | None:
        """A copy of the token's template from its flight gallery (a 1:1 check), None if not in memory."""
        key = str(token_id)
        home = self._homes.get(key)
        gallery = self._flights.get(home[0]) if home is not None else None
        if gallery is None or not gallery.contains(key):
            return None
        try:
            return gallery.vector(key)
        except KeyError:  # removed between the check and the read
            return None

    def homes(self) -> dict[uuid.UUID, tuple[uuid.UUID, datetime]]:
        """Snapshot: every token in memory → (flight, window). Used by reconciliation."""
        return {uuid.UUID(t): home for t, home in self._homes.items()}

    async def search_flights(self, flight_ids: Iterable[uuid.UUID], vector: np.ndarray, k: int = 2) -> list[Candidate]:
        return await self._search([self._flights[f] for f in flight_ids if f in self._flights], vector, k)

    async def search_windows(self, starts: Iterable[datetime], vector: np.ndarray, k: int = 2) -> list[Candidate]:
        return await self._search([self._windows[s] for s in starts if s in self._windows], vector, k)

    async def search_wide(self, starts: Iterable[datetime], flight_ids: Iterable[uuid.UUID], vector: np.ndarray,
                          k: int = 2) -> list[Candidate]:
        """Everyone live in these windows and flights, each token once (the audit-only misuse search)."""
        return await self._search([*(self._windows[s] for s in starts if s in self._windows),
                                   *(self._flights[f] for f in flight_ids if f in self._flights)], vector, k)

    async def search_purpose(self, kind: DeviceKind, keys: Iterable[PurposeKey], vector: np.ndarray,
                             k: int = 2) -> list[Candidate]:
        """Search ``kind``'s purpose galleries under ``keys``: only the people it may admit now."""
        by_key = self._purpose[kind]
        return await self._search([by_key[key] for key in keys if key in by_key], vector, k)

    async def _search(self, galleries: list[Gallery], vector: np.ndarray, k: int) -> list[Candidate]:
        if not galleries:
            return []
        if sum(len(g) for g in galleries) <= self.params.exact_max:
            # A gate's flights: exhaustive in ~0.1 ms, so right here. An executor hop costs more,
            # and under load it queues behind face-model runs (ops/bench/identify.py).
            found = search_all_now(galleries, vector, k)
            if found is not None:
                return found
        return await run_blocking(search_all, galleries, vector, k)

    # ---- writes ------------------------------------------------------------------------------

    def configure(self, params: GalleryParams) -> None:
        """Parameters for galleries created from now on (set from the settings before the rebuild)."""
        self.params = params

    def _new_gallery(self) -> Gallery:
        return Gallery(self.params)

    async def add(self, token_id: uuid.UUID, flight_id: uuid.UUID, window: datetime, vector: np.ndarray,
                  standing: Standing | None = None) -> bool:
        """Put a token's face in its flight's and window's galleries, and in the purpose galleries
        its ``standing`` admits it to (none without one); False (nothing added) when the flight has
        already been dropped."""
        key = str(token_id)
        async with self._structure:
            if flight_id in self._closed:
                log.info("gallery_add_refused_flight_closed", token_id=key, flight_id=str(flight_id))
                return False
            flight_g = self._flights.get(flight_id) or await run_blocking(self._new_gallery)
            window_g = self._windows.get(window) or await run_blocking(self._new_gallery)
            old = self._homes.get(key)
            if old and old[1] != window and old[1] in self._windows:
                await run_blocking(self._windows[old[1]].remove, [key])
            await run_blocking(add_to, (flight_g, window_g), key, vector)
            self._flights[flight_id] = flight_g
            self._windows[window] = window_g
            self._homes[key] = (flight_id, window)
            # Every new place gets the (possibly new) template; the old places it leaves are wiped.
            await self._replace_places(key, vector, places(old, self._standing.get(key)),
                                       places((flight_id, window), standing), refresh=True)
            self._set_standing(key, standing)
            return True

    async def restate(self, token_id: uuid.UUID, standing: Standing, *,
                      unless_changed_from: Standing | None = None) -> bool:
        """A token's standing changed (cleared, boarded, lounge eligibility): move it between
        purpose galleries. The face is copied from its wide flight gallery in memory (no database
        read, no decryption). Returns whether any purpose gallery changed; a token not in memory
        is left alone (its add, or the reconcile, places it). With ``unless_changed_from``, nothing
        happens if the standing is no longer that one (a reconcile must not undo a newer change)."""
        key = str(token_id)
        async with self._structure:
            home = self._homes.get(key)
            if home is None or (unless_changed_from is not None and self._standing.get(key) != unless_changed_from):
                return False
            old, new = places(home, self._standing.get(key)), places(home, standing)
            self._standing[key] = standing
            if old == new:
                return False
            vector = None
            if new - old:
                flight_g = self._flights.get(home[0])
                if flight_g is None or not flight_g.contains(key):
                    return False
                vector = await run_blocking(flight_g.vector, key)
            await self._replace_places(key, vector, old, new, refresh=False)
            return True

    def _set_standing(self, key: str, standing: Standing | None) -> None:
        if standing is None:
            self._standing.pop(key, None)
        else:
            self._standing[key] = standing

    async def _replace_places(self, key: str, vector: np.ndarray | None, old: set[Place], new: set[Place], *,
                              refresh: bool) -> None:
        """Under ``_structure``: put ``key`` in the purpose galleries of ``new`` (all of them when
        ``refresh``, a new template; else only those it was not in) and wipe it from ``old - new``.
        Empty window and flight purpose galleries are dropped, like the wide ones."""
        adding = new if refresh else new - old
        leaving = old - new
        if not adding and not leaving:
            return
        targets: list[tuple[Place, Gallery]] = []
        for kind, pk in adding:
            targets.append(((kind, pk), self._purpose[kind].get(pk) or await run_blocking(self._new_gallery)))
        sources = [g for kind, pk in leaving if (g := self._purpose[kind].get(pk)) is not None]
        await run_blocking(swap, [g for _, g in targets], sources, key, vector)
        for (kind, pk), g in targets:
            self._purpose[kind][pk] = g
        for kind, pk in leaving:
            g = self._purpose[kind].get(pk)
            if g is not None and len(g) == 0:
                del self._purpose[kind][pk]

    async def remove(self, token_ids: Iterable[uuid.UUID]) -> None:
        """Take tokens out of every gallery (revocation, opt-out, hold release is separate)."""
        async with self._structure:
            for token_id in token_ids:
                home = self._homes.pop(str(token_id), None)
                if home is None:
                    continue
                flight_g, window_g = self._flights.get(home[0]), self._windows.get(home[1])
                await run_blocking(remove_from, (flight_g, window_g), str(token_id))
                standing = self._standing.pop(str(token_id), None)
                await self._replace_places(str(token_id), None, places(home, standing), set(), refresh=False)

    async def drop_flight(self, flight_id: uuid.UUID) -> int:
        """Forget a closed flight everywhere, for good (later adds for it are refused); returns how
        many tokens left memory."""
        async with self._structure:
            self._closed.add(flight_id)
            dropped = self._flights.pop(flight_id, None)
            if dropped is not None:
                # Wiped, not just dropped: a search already holding it must find nothing, and its
                # arrays must not carry the faces until the memory happens to be reused.
                await run_blocking(dropped.clear)
            leaving = [t for t, (f, _) in self._homes.items() if f == flight_id]
            await self._drop_purpose_flight(flight_id, leaving)
            by_window: dict[datetime, list[str]] = {}
            for t in leaving:
                by_window.setdefault(self._homes.pop(t)[1], []).append(t)
            for window, ids in by_window.items():
                g = self._windows.get(window)
                if g is None:
                    continue
                await run_blocking(g.remove, ids)
                if len(g) == 0:
                    del self._windows[window]
            return len(leaving)

    async def _drop_purpose_flight(self, flight_id: uuid.UUID, leaving: list[str]) -> None:
        """Under ``_structure``, before ``leaving``'s homes are forgotten: wipe a dropped flight's
        tokens from every purpose gallery (a flight-keyed one is cleared whole)."""
        by_gallery: dict[Place, list[str]] = {}
        for t in leaving:
            for place in places(self._homes[t], self._standing.pop(t, None)):
                by_gallery.setdefault(place, []).append(t)
        for kind, by_key in self._purpose.items():
            dropped = by_key.pop(flight_id, None)
            if dropped is not None:
                await run_blocking(dropped.clear)
                by_gallery.pop((kind, flight_id), None)
        for (kind, pk), ids in by_gallery.items():
            g = self._purpose[kind].get(pk)
            if g is not None:
                await run_blocking(g.remove, ids)
                if len(g) == 0:
                    del self._purpose[kind][pk]

    async def move_flight_window(self, flight_id: uuid.UUID, window: datetime) -> int:
        """A delay moved the flight to another departure window: move its tokens to that window's
        gallery (the flight gallery stays as it is). Returns how many tokens moved."""
        async with self._structure:
            moving: dict[datetime, list[str]] = {}
            for t, (f, w) in self._homes.items():
                if f == flight_id and w != window:
                    moving.setdefault(w, []).append(t)
            if not moving:
                return 0
            target = self._windows.get(window) or await run_blocking(self._new_gallery)
            for old_window, ids in moving.items():
                source = self._windows.get(old_window)
                if source is not None:
                    await run_blocking(move, source, target, ids)
                    if len(source) == 0:
                        del self._windows[old_window]
                for t in ids:
                    await self._rehome_purpose(t, (flight_id, old_window), (flight_id, window))
                    self._homes[t] = (flight_id, window)
            self._windows[window] = target
            return sum(len(ids) for ids in moving.values())

    async def _rehome_purpose(self, key: str, old: tuple[uuid.UUID, datetime], new: tuple[uuid.UUID, datetime]) -> None:
        """Under ``_structure``: follow a token's move to another window in the purpose galleries."""
        standing = self._standing.get(key)
        before, after = places(old, standing), places(new, standing)
        flight_g = self._flights.get(new[0])
        if before == after or flight_g is None or not flight_g.contains(key):
            return
        vector = await run_blocking(flight_g.vector, key)
        await self._replace_places(key, vector, before, after, refresh=False)

    async def replace_all(self, flights: dict[uuid.UUID, Gallery], windows: dict[datetime, Gallery],
                          homes: dict[str, tuple[uuid.UUID, datetime]], purposes: PurposeGalleries | None = None,
                          standing: dict[str, Standing] | None = None) -> None:
        """Swap in galleries built elsewhere (start-up rebuild, reconcile) in one step; purpose
        galleries (purpose.py ``build_purpose_galleries``) and standings with them, or none."""
        async with self._structure:
            self._flights, self._windows, self._homes = flights, windows, homes
            self._purpose = {**empty(), **(purposes or {})}
            self._standing = dict(standing or {})
