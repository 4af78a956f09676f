"""Several galleries searched as one: each token once, with its best score (the registry's searches).

Blocking on the galleries' read locks (``search_all``, run in the executor) or not at all
(``search_all_now``, run on the event loop for small galleries).
"""

from __future__ import annotations

import numpy as np

from flighttoken.galleries.index import Candidate, Gallery

__all__ = ["merge", "search_all", "search_all_now"]


def search_all(galleries: list[Gallery], vector: np.ndarray, k: int) -> list[Candidate]:
    return merge([g.search(vector, k) for g in galleries], k)


def search_all_now(galleries: list[Gallery], vector: np.ndarray, k: int) -> list[Candidate] | None:
    """``search_all`` without waiting for any lock, or None if a gallery is being written."""
    results = []
    for g in galleries:
        found = g.search_now(vector, k)
        if found is None:
            return None
        results.append(found)
    return merge(results, k)


def merge(results: list[list[Candidate]], k: int) -> list[Candidate]:
    found: dict[str, Candidate] = {}
    for candidates in results:
        for c in candidates:
            if c.id not in found or found[c.id].score < c.score:
                found[c.id] = c
    return sorted(found.values(), key=lambda c: c.score, reverse=True)[:k]
