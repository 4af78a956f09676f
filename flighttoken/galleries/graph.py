"""The approximate part of a large gallery: hnswlib graphs (shards) over projected vectors.

The graph only proposes candidate labels; the exact store (``exact.py``) scores them. A removed
label is tombstoned and its stored vector overwritten: in place for a few, by rewriting the shard
for many. Not thread-safe: hnswlib is not safe for ``knn_query`` concurrent with ``add_items``, so
the gallery (``index.py``) holds its lock. Why it looks the way it does (measured by
``ops/bench/galleries.py``; see also ``index.py``):

* The graph holds the vectors projected onto their top ``graph_dim`` principal directions,
  fitted on the gallery when the graph is built. Face templates put most of their variance in a
  couple of hundred directions, so the projection keeps the ranking of near faces while making
  every distance in the graph ~2.7x cheaper. Only the candidate list comes from the projection.
* One graph per ``shard_size`` labels. Every shard is searched on every query, from cold caches:
  11 shards of 4,096 built 1.5x faster than one graph of 42,000 but searched 4-5x slower, so a
  NIST-sized window is one graph (built on all cores) and shards only bound very large ones.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import hnswlib
import numpy as np

from flighttoken.galleries.params import GROWTH, MIN_CAPACITY, IndexParams

__all__ = ["Graph", "by_shard", "fit_basis"]

# Inner product: every vector is L2-normalised first, so it is the cosine similarity.
SPACE = "ip"
RANDOM_SEED = 100
# A principal-direction fit needs several samples per kept direction to be worth trusting; with
# fewer vectors the graph keeps the full dimension. (Fitting on a sample of 8,192 out of 42,000
# saved ~1.5 s of CPU but doubled the graph's misses in ops/bench/galleries.py.)
_MIN_FIT_PER_DIM = 4
# Removed labels are overwritten in place while they are fewer than one in this many of their
# shard's slots; more rewrite the shard once (measured: one in-place overwrite, ~3 ms at 42,000,
# costs about as much as copying ~2,500 slots of a shard).
_REWRITE_AT = 2048


class Graph:
    """hnswlib shards over projected vectors.

    Shard ``s`` holds labels ``[s * shard_size, (s + 1) * shard_size)``: labels only grow, so they
    fill shards in order, and a label's shard is arithmetic. A shard grows (hnswlib's resize, a
    copy) as labels arrive, up to ``shard_size``.
    """

    def __init__(self, basis: np.ndarray | None, dim: int, params: IndexParams) -> None:
        self.basis = basis  # (dim, graph_dim), or None: the graph holds the full vectors
        self.dim = dim if basis is None else basis.shape[1]
        self.shard_size = params.shard_size
        self.params = params
        self.ef = params.ef  # set_ef may change it
        self.shards: list[hnswlib.Index | None] = []
        self.live: list[int] = []  # live labels per shard

    @classmethod
    def build(cls, labels: np.ndarray, matrix: np.ndarray, params: IndexParams, num_threads: int) -> Graph:
        """A graph over ``labels`` (ascending) holding ``matrix``'s rows, its projection fitted on them."""
        graph = cls(fit_basis(matrix, params.graph_dim), matrix.shape[1], params)
        graph.insert(labels, graph.project(matrix), num_threads)
        return graph

    def project(self, matrix: np.ndarray) -> np.ndarray:
        return matrix if self.basis is None else np.ascontiguousarray(matrix @ self.basis)

    def shard(self, s: int, adding: int) -> hnswlib.Index:
        """Shard ``s``, created or grown to take ``adding`` more labels. Growing copies the shard
        (hnswlib's resize), so it grows by half again at least; it never exceeds ``shard_size``."""
        while len(self.shards) <= s:
            self.shards.append(None)
            self.live.append(0)
        index = self.shards[s]
        if index is None:
            p = self.params
            index = hnswlib.Index(space=SPACE, dim=self.dim)
            index.init_index(max_elements=min(self.shard_size, max(MIN_CAPACITY, int(adding * 1.25))), M=p.M,
                             ef_construction=p.ef_construction, random_seed=RANDOM_SEED)
            # ef is index-wide state in hnswlib: set only under the gallery's write lock.
            index.set_ef(self.ef)
            # Searches get their concurrency from the server's threads, one per request.
            index.set_num_threads(1)
            self.shards[s] = index
        needed = index.get_current_count() + adding  # tombstones keep their slots
        if needed > index.get_max_elements():
            index.resize_index(min(self.shard_size, max(needed, int(index.get_max_elements() * GROWTH))))
        return index

    def insert(self, labels: np.ndarray, projected: np.ndarray, num_threads: int) -> None:
        """Add labelled rows shard by shard, in parallel across shards. On failure, every label of
        this call that reached a shard is tombstoned there, then the error propagates."""
        groups = by_shard(labels, self.shard_size)
        for s, rows in groups:
            self.shard(s, len(rows))  # created and sized here, on one thread
        per_shard = max(1, num_threads // max(len(groups), 1))

        def add(group: tuple[int, np.ndarray]) -> None:
            s, rows = group
            index = self.shards[s]
            assert index is not None  # created above by self.shard
            index.add_items(projected[rows], labels[rows], num_threads=per_shard)

        try:
            if len(groups) > 1 and num_threads > 1:
                with ThreadPoolExecutor(min(num_threads, len(groups)), thread_name_prefix="gallery-build") as pool:
                    list(pool.map(add, groups))
            else:
                for group in groups:
                    add(group)
        except BaseException:
            self._tombstone_partial(labels)
            raise
        for s, rows in groups:
            self.live[s] += len(rows)

    def erase(self, labels: np.ndarray) -> None:
        """Tombstone ``labels`` and overwrite their stored (projected) vectors with zeros.

        hnswlib's ``mark_deleted`` keeps a tombstone's vector in the graph's memory, and so would
        its ``replace_deleted`` until a new item happened to take that slot. A few labels are
        overwritten in place (``add_items`` on an existing label rewrites its data and repairs its
        links: ~3 ms each at 42,000); many (a departed flight leaving its window) rewrite the
        shard's serialised state once (~50 ms at 42,000, links untouched) rather than pay ~1 s.
        """
        for s, rows in by_shard(labels, self.shard_size):
            index = self.shards[s]
            assert index is not None
            ids = labels[rows]
            if len(ids) * _REWRITE_AT < index.get_current_count():
                index.add_items(np.zeros((len(ids), self.dim), dtype=np.float32), ids, num_threads=1)
                for label in ids.tolist():
                    index.mark_deleted(label)
            else:
                for label in ids.tolist():
                    index.mark_deleted(label)
                self.shards[s] = self._zeroed(index, ids)
            self.live[s] -= len(ids)

    def copy(self) -> Graph:
        """An independent copy (a purpose gallery whose members are this graph's: a memory copy
        of ~20 MB at 42,000 faces instead of seconds of graph building)."""
        graph = Graph(self.basis, self.dim, self.params)
        graph.ef = self.ef
        graph.shards = [None if index is None else self._zeroed(index, np.empty(0, np.int64)) for index in self.shards]
        graph.live = list(self.live)
        return graph

    def _zeroed(self, index: hnswlib.Index, labels: np.ndarray) -> hnswlib.Index:
        """A copy of ``index`` (through hnswlib's pickle state) with ``labels``' vectors zeroed."""
        # hnswlib's pickle state is a 1-tuple of its parameter dict (typeshed types it as object).
        params = cast(tuple[dict[str, Any]], index.__getstate__())[0]
        if len(labels):
            internal = dict(zip(params["label_lookup_external"].tolist(), params["label_lookup_internal"].tolist(),
                                strict=True))
            rows = params["data_level0"].reshape(-1, params["size_data_per_element"])
            start = params["offset_data"]
            for label in labels.tolist():
                rows[internal[label], start : start + self.dim * 4] = 0
        copy = hnswlib.Index(params)  # what unpickling does: construct from the parameter dict
        copy.set_ef(self.ef)
        copy.set_num_threads(1)
        return copy

    def set_ef(self, ef: int) -> None:
        self.ef = ef
        for index in self.shards:
            if index is not None:
                index.set_ef(ef)

    def _tombstone_partial(self, labels: np.ndarray) -> None:
        wanted = set(labels.tolist())
        for index in self.shards:
            if index is None:
                continue
            for label in wanted.intersection(index.get_ids_list()):
                with contextlib.suppress(RuntimeError):  # already deleted
                    # Overwritten first: a tombstone keeps its vector in hnswlib's memory.
                    index.add_items(np.zeros((1, self.dim), dtype=np.float32), [label], num_threads=1)
                    index.mark_deleted(label)


def by_shard(labels: np.ndarray, shard_size: int) -> list[tuple[int, np.ndarray]]:
    """(shard, row positions in ``labels``) for each shard ``labels`` touch (labels ascend)."""
    shard_of = labels // shard_size
    cuts = np.flatnonzero(np.diff(shard_of)) + 1
    return [(int(shard_of[rows[0]]), rows) for rows in np.split(np.arange(len(labels)), cuts)]


def fit_basis(matrix: np.ndarray, graph_dim: int) -> np.ndarray | None:
    """Top ``graph_dim`` principal directions of the rows (uncentred: inner products are what the
    graph must preserve), or None when projecting would not pay or cannot be fitted well."""
    n, dim = matrix.shape
    if graph_dim >= dim or n < _MIN_FIT_PER_DIM * graph_dim:
        return None
    second_moment = (matrix.T @ matrix).astype(np.float64)
    _, vectors = np.linalg.eigh(second_moment)  # ascending eigenvalues
    return np.ascontiguousarray(vectors[:, ::-1][:, :graph_dim], dtype=np.float32)
