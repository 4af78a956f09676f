"""The blocking writes the registry makes to a token's galleries in one executor hop (registry.py)."""

from __future__ import annotations

import numpy as np

from flighttoken.galleries.index import Gallery

__all__ = ["add_to", "move", "remove_from"]


def add_to(galleries: tuple[Gallery, ...], key: str, vector: np.ndarray) -> None:
    for g in galleries:
        g.add([(key, vector)])


def remove_from(galleries: tuple[Gallery | None, ...], key: str) -> None:
    for g in galleries:
        if g is not None:
            g.remove([key])


def move(source: Gallery, target: Gallery, ids: list[str]) -> None:
    # Add before removing, so a search in between finds the token in one window or the other.
    items = [(t, source.vector(t)) for t in ids if source.contains(t)]
    target.add(items)
    source.remove(ids)
