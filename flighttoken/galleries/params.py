"""How a gallery is built and searched: the one list of its parameters, and its sizing constants.

``IndexParams`` is what ``Gallery`` takes; the registry's ``GalleryParams`` adds only how the
values are read from the settings (``FLIGHTTOKEN_GALLERY_*``), so each parameter is named once.
"""

from __future__ import annotations

import os

import msgspec

__all__ = ["DEFAULT_DIM", "GROWTH", "MIN_CAPACITY", "IndexParams"]

DEFAULT_DIM = 512

# Capacity grows by this factor (at least) when full: amortises the copy of the matrix (and of a
# graph shard) over many adds.
GROWTH = 1.5
MIN_CAPACITY = 64


class IndexParams(msgspec.Struct, frozen=True, kw_only=True):
    """One gallery's search and build parameters (see ``galleries/index.py`` for why these values)."""

    exact_max: int = 1024
    """Up to this many live ids a gallery is searched exhaustively, and has no graph."""
    graph_dim: int = 192
    """Principal directions the graph's vectors are projected onto. (At 42,000 faces 96 builds in
    4.0 s of CPU instead of 7.0 and searches ~30% faster; its extra misses are all lost searches,
    which ``verify_below`` catches: see ``index.py``.)"""
    shard_size: int = 65536
    """Labels per hnswlib graph."""
    M: int = 12  # hnswlib's name for it
    ef_construction: int = 32
    ef: int = 128
    rerank_k: int = 32
    """Candidates asked of every shard, then re-scored exactly."""
    verify_below: float | None = None
    """Graph results with a weaker best score are re-checked exhaustively (None: never). A graph
    miss is a lost search, whose best is a crowd score; see ``index.py`` for where to put it."""
    build_threads: int = 0
    """Threads for a bulk build; 0 means every core."""

    def __post_init__(self) -> None:
        if min(self.M, self.ef_construction, self.ef, self.rerank_k, self.graph_dim, self.shard_size) <= 0:
            raise ValueError("M, ef_construction, ef, rerank_k, graph_dim and shard_size must be positive")

    def threads(self) -> int:
        return self.build_threads or os.cpu_count() or 1
