"""How a gallery is built and searched: the one list of its parameters, and its sizing constants.

``IndexParams`` is what ``Gallery`` takes; ``GalleryParams`` (the registry's) adds only how the
values are read from the settings (``FLIGHTTOKEN_GALLERY_*``), so each parameter is named once.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from flighttoken.decisions.match import threshold_for
from flighttoken.decisions.policy import TOUCHPOINTS

__all__ = ["DEFAULT_DIM", "GROWTH", "LARGEST_GALLERY", "MIN_CAPACITY", "GalleryParams", "IndexParams"]

DEFAULT_DIM = 512

# Capacity grows by this factor (at least) when full: amortises the copy of the matrix (and of a
# graph shard) over many adds.
GROWTH = 1.5
MIN_CAPACITY = 64


class IndexParams(msgspec.Struct, frozen=True, kw_only=True):
    """One gallery's search and build parameters (see ``galleries/index.py`` for why these values)."""

    exact_max: int = 1024
    """Up to this many live ids a gallery is searched exhaustively, and has no graph."""
    graph_dim: int = 96
    """Principal directions the graph's vectors are projected onto. (At 42,000 faces 96 builds in
    4.0 s of CPU instead of 7.0 for 192 and searches ~30% faster; its extra misses are lost
    searches, which ``verify_below`` catches, and missing runner-ups, which ``best_neighbours``
    finds: see ``index.py``.)"""
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
    best_neighbours: bool = True
    """A graph result not re-checked also re-scores the graph neighbours of its best face, where a
    runner-up within the decision margin hides when the graph lacks the probe's edge to it."""
    build_threads: int = 0
    """Threads for a bulk build; 0 means every core."""

    def __post_init__(self) -> None:
        if min(self.M, self.ef_construction, self.ef, self.rerank_k, self.graph_dim, self.shard_size) <= 0:
            raise ValueError("M, ef_construction, ef, rerank_k, graph_dim and shard_size must be positive")

    def threads(self) -> int:
        return self.build_threads or os.cpu_count() or 1


# Hong Kong's authorities judge contactless clearance suitable for pre-verified groups below 100,000.
LARGEST_GALLERY = 100_000


class GalleryParams(IndexParams, frozen=True, kw_only=True):
    """How every gallery of an instance is built and searched (``FLIGHTTOKEN_GALLERY_*``); the
    fields are ``IndexParams``'."""

    @classmethod
    def from_settings(cls, s: Any) -> GalleryParams:
        # Verified: anything a touchpoint could accept near its threshold, and any possible duplicate.
        # Thresholds rise with gallery size (decisions/match.py), so take them at the largest gallery a
        # clearance group may hold: a graph never decides alone near any threshold in use. (Issue 19
        # tried re-checking only results too weak for any decision, 0.37: ~3 % re-checked instead of
        # ~30 %, but on one build of the real 42,000-face registry the graph missed a probe's best and
        # proceeded with its LFW alias: a wrong-person accept. ops/results/galleries.md.)
        highest = max(threshold_for(s, kind, LARGEST_GALLERY) for kind in TOUCHPOINTS)
        verify_below = max(highest + s.galleries.gallery_verify_margin, s.decisions.duplicate_threshold)
        g = s.galleries
        return cls(exact_max=g.gallery_exact_max, graph_dim=g.gallery_graph_dim, shard_size=g.gallery_shard_size,
                   M=g.gallery_m, ef_construction=g.gallery_ef_construction, ef=g.gallery_ef,
                   rerank_k=g.gallery_rerank_k, verify_below=round(verify_below, 6),
                   build_threads=g.gallery_build_threads)
