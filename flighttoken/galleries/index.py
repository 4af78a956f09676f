"""In-memory face gallery: an hnswlib index keyed by opaque string ids, with exact re-rank.

A gallery holds L2-normalised face templates for one flight (boarding) or one departure window
(e-channels, lounges). hnswlib finds a short list of candidates; the scores we return are always
recomputed exactly from our own copy of the vectors, because a gate decision must never rest on
an approximate score.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import hnswlib
import msgspec
import numpy as np

__all__ = ["DEFAULT_DIM", "Candidate", "Gallery", "exact_top_k"]

DEFAULT_DIM = 512
Space = Literal["ip", "cosine"]

# Capacity grows by this factor (at least) when full: amortises the copy of the matrix and of
# hnswlib's level-0 block over many adds.
_GROWTH = 1.5
_MIN_CAPACITY = 64


class Candidate(msgspec.Struct, frozen=True):
    """One search hit. ``score`` is the exact cosine similarity in [-1, 1]."""

    id: str
    score: float


def exact_top_k(matrix: np.ndarray, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``matrix`` by inner product with ``vector``.

    Returns ``(rows, scores)``, best first; fewer than ``k`` when ``matrix`` has fewer rows. With
    L2-normalised rows and vector the scores are cosine similarities. Ties are broken by the lower
    row index so results are deterministic.
    """
    return _top_k(np.asarray(matrix @ vector, dtype=np.float32).reshape(-1), k)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = scores.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
        part.sort()  # row order first, so the stable sort below breaks ties by row index
    else:
        part = np.arange(n)
    order = part[np.argsort(-scores[part], kind="stable")]
    return order.astype(np.int64, copy=False), scores[order]


class _RWLock:
    """Writer-preferring readers-writer lock (not reentrant).

    Writers are rare (enrolments, departures) and readers constant (every touchpoint), so a
    waiting writer blocks new readers; otherwise a steady stream of searches could starve it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            except BaseException:
                # Interrupted while waiting: readers held back for us must be let go.
                self._writers_waiting -= 1
                self._cond.notify_all()
                raise
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class Gallery:
    """A time-bounded face gallery: hnswlib HNSW graph + exact re-rank, safe across threads.

    Ids are opaque strings (token ids). hnswlib labels are ints assigned from a counter and never
    reused within one gallery, so a label seen by a search can never silently mean another
    person. Replacing an id tombstones its old label (``mark_deleted``) and inserts a new one.

    Locking: searches share a read lock and run concurrently; ``add``, ``remove``, ``set_ef`` and
    resizing take the write lock, so no search ever sees a half-applied write. hnswlib itself is
    not safe for ``knn_query`` concurrent with ``add_items``/``resize_index``.

    Cost (all methods are synchronous and blocking):

    * ``build`` — expensive: HNSW construction, about 0.05 s for a 420-face flight and about a
      minute for 42,000 (512-d random vectors, ef_construction=200, both cores of a 2-core
      machine). It builds a private gallery nobody else can see; the caller swaps its reference
      when done. Run it through ``flighttoken.executor.run_blocking``.
    * ``add`` — blocking, holds the write lock for the whole batch; per item roughly one HNSW
      insertion, plus an occasional resize that copies the whole index. Run it through
      ``run_blocking``, and keep batches small: every search waits while it runs.
    * ``remove``, ``set_ef`` — cheap, but take the write lock (so wait for running searches).
    * ``search`` — about 0.1 ms (flight, exhaustive) to 1 ms (42,000, HNSW) of CPU, but it
      blocks while a write holds the lock or waits for it; from async code use ``run_blocking``.
    * ``__len__``, ``contains``, ``ids``, ``vector`` — cheap reads (``ids`` is O(n)).

    Search: a gallery with at most ``exact_max`` live ids is scored exhaustively (exact top-k);
    a larger one asks hnswlib for ``max(k, rerank_k)`` candidates with ``ef`` (hnswlib searches
    with ``max(ef, that)``) and re-scores them exactly. Returned scores are always exact.

    Tombstones stay in the graph (they are still traversed) and in memory; ``deleted_count``
    tells the owner when a rebuild from the database is worth it.
    """

    def __init__(
        self,
        dim: int = DEFAULT_DIM,
        *,
        space: Space = "ip",
        M: int = 16,  # hnswlib's name for it
        ef_construction: int = 200,
        ef: int = 64,
        rerank_k: int = 10,
        exact_max: int = 1024,
        capacity: int = 1024,
        random_seed: int = 100,
    ) -> None:
        if space not in ("ip", "cosine"):
            raise ValueError(f"space must be 'ip' or 'cosine', not {space!r}")
        if dim <= 0 or M <= 0 or ef_construction <= 0 or ef <= 0 or rerank_k <= 0:
            raise ValueError("dim, M, ef_construction, ef and rerank_k must be positive")
        self._dim = dim
        self._space: Space = space
        self._rerank_k = rerank_k
        self._exact_max = max(int(exact_max), 0)
        self._capacity = max(int(capacity), _MIN_CAPACITY)
        self._index = hnswlib.Index(space=space, dim=dim)
        self._index.init_index(
            max_elements=self._capacity, M=M, ef_construction=ef_construction, random_seed=random_seed
        )
        # ef is index-wide state in hnswlib: set it only under the write lock, never per query.
        # knn_query uses max(ef, k) anyway, so a larger k needs no set_ef.
        self._index.set_ef(ef)
        # The server supplies concurrency (one search per request thread) on a 2-core machine;
        # hnswlib's own thread pool would only oversubscribe it.
        self._index.set_num_threads(1)
        # Row i holds the (normalised) vector of label i; rows of tombstoned labels are kept
        # but never read through a live id.
        self._vectors = np.zeros((self._capacity, dim), dtype=np.float32)
        self._live = np.zeros(self._capacity, dtype=bool)
        self._label_ids: list[str | None] = []  # label -> id (None once tombstoned)
        self._id_labels: dict[str, int] = {}  # id -> live label
        self._next_label = 0
        self._lock = _RWLock()

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        items: Iterable[tuple[str, np.ndarray]],
        *,
        dim: int = DEFAULT_DIM,
        space: Space = "ip",
        M: int = 16,
        ef_construction: int = 200,
        ef: int = 64,
        rerank_k: int = 10,
        exact_max: int = 1024,
        headroom: float = 0.25,
        num_threads: int | None = None,
        random_seed: int = 100,
    ) -> Gallery:
        """Build a complete gallery from ``items`` (e.g. a rebuild from PostgreSQL). Blocking.

        The result is private until returned, so callers never see it half-built: they swap
        their reference to it in one assignment. ``headroom`` sizes capacity for later adds
        without an immediate resize. ``num_threads`` (default: all cores) only applies to this
        bulk insertion; searches on the result stay single-threaded. A repeated id keeps its last
        vector, as with ``add``.
        """
        ids, matrix = _prepare(items, dim)
        gallery = cls(
            dim,
            space=space,
            M=M,
            ef_construction=ef_construction,
            ef=ef,
            rerank_k=rerank_k,
            exact_max=exact_max,
            capacity=int(len(ids) * (1.0 + max(headroom, 0.0))) + 1,
            random_seed=random_seed,
        )
        gallery._add_prepared(ids, matrix, num_threads or os.cpu_count() or 1)
        return gallery

    # ---- writes -------------------------------------------------------------------------------

    def add(self, items: Sequence[tuple[str, np.ndarray]], *, num_threads: int = 1) -> None:
        """Insert or replace ``(id, vector)`` pairs. Blocking; holds the write lock.

        Vectors are validated (shape ``(dim,)``, finite, non-zero) and L2-normalised before
        anything changes, so a bad item leaves the gallery untouched. A repeated id within one
        call keeps its last vector.
        """
        ids, matrix = _prepare(items, self._dim)
        self._add_prepared(ids, matrix, num_threads)

    def remove(self, ids: Iterable[str]) -> None:
        """Tombstone ``ids`` (``mark_deleted``); unknown ids are ignored. Takes the write lock."""
        wanted = [ids] if isinstance(ids, str) else list(ids)
        with self._lock.write():
            for id_ in wanted:
                label = self._id_labels.pop(id_, None)
                if label is not None:
                    self._tombstone(label)

    def set_ef(self, ef: int) -> None:
        """Change hnswlib's search breadth (recall/latency). Takes the write lock."""
        if ef <= 0:
            raise ValueError("ef must be positive")
        with self._lock.write():
            self._index.set_ef(ef)

    # ---- reads --------------------------------------------------------------------------------

    def search(self, vector: np.ndarray, k: int = 2) -> list[Candidate]:
        """Top-``k`` live ids by exact cosine similarity, best first (fewer if the gallery is smaller).

        Galleries of at most ``exact_max`` live ids (a flight) are searched exhaustively: at that
        size a matrix-vector product costs about what an HNSW query does and cannot miss. Larger
        ones ask hnswlib for ``max(k, rerank_k)`` candidates and recompute their scores exactly
        from the stored vectors, so every returned score is exact, and a ranking error can only
        come from a true neighbour missing from hnswlib's short list.
        """
        if k < 1:
            raise ValueError("k must be at least 1")
        query = _normalise(np.asarray(vector, dtype=np.float32), self._dim)
        with self._lock.read():
            live = len(self._id_labels)
            if live == 0:
                return []
            n_query = max(k, self._rerank_k)
            if live <= self._exact_max or n_query >= live:
                labels, scores = self._exact_search(query, k)
            else:
                try:
                    found, _ = self._index.knn_query(query, k=n_query, num_threads=1)
                except RuntimeError:
                    # hnswlib raises when it cannot fill k results, which tombstones make
                    # possible even with k <= live; exact search cannot fail that way.
                    labels, scores = self._exact_search(query, k)
                else:
                    short = found[0].astype(np.int64)
                    rows, scores = exact_top_k(self._vectors[short], query, k)
                    labels = short[rows]
            out: list[Candidate] = []
            for label, score in zip(labels.tolist(), scores.tolist(), strict=True):
                id_ = self._label_ids[label]
                if id_ is not None:  # hnswlib only returns live labels; cheap belt and braces
                    out.append(Candidate(id=id_, score=score))
            return out

    def __len__(self) -> int:
        """Number of live (non-removed) ids."""
        return len(self._id_labels)

    def contains(self, id_: str) -> bool:
        return id_ in self._id_labels

    __contains__ = contains

    def ids(self) -> list[str]:
        """Snapshot of the live ids, in no particular order."""
        with self._lock.read():
            return list(self._id_labels)

    def vector(self, id_: str) -> np.ndarray:
        """A copy of the stored (normalised) vector for ``id_``; ``KeyError`` if not live."""
        with self._lock.read():
            return self._vectors[self._id_labels[id_]].copy()

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def space(self) -> Space:
        return self._space

    @property
    def capacity(self) -> int:
        """Label slots allocated; live ids and tombstones both use one."""
        return self._capacity

    @property
    def deleted_count(self) -> int:
        """Tombstoned labels still in the graph (removed or replaced ids)."""
        return self._next_label - len(self._id_labels)

    def __repr__(self) -> str:
        return (
            f"Gallery(live={len(self)}, deleted={self.deleted_count}, capacity={self._capacity}, "
            f"dim={self._dim}, space={self._space!r})"
        )

    # ---- internals ----------------------------------------------------------------------------

    def _add_prepared(self, ids: list[str], matrix: np.ndarray, num_threads: int) -> None:
        n = len(ids)
        if n == 0:
            return  # hnswlib rejects an empty batch
        with self._lock.write():
            self._ensure_capacity(self._next_label + n)
            start = self._next_label
            labels = np.arange(start, start + n, dtype=np.int64)
            self._vectors[start : start + n] = matrix
            # Claim the labels before hnswlib sees them: if add_items fails part-way, the labels
            # it did insert are tombstoned below rather than ever being handed out again.
            self._next_label = start + n
            self._label_ids.extend([None] * n)
            try:
                self._index.add_items(matrix, labels, num_threads=num_threads)
            except BaseException:
                self._tombstone_partial(labels)
                raise
            for id_, label in zip(ids, labels.tolist(), strict=True):
                old = self._id_labels.get(id_)
                if old is not None:
                    self._tombstone(old)
                self._id_labels[id_] = label
                self._label_ids[label] = id_
                self._live[label] = True

    def _tombstone(self, label: int) -> None:
        self._index.mark_deleted(label)
        self._label_ids[label] = None
        self._live[label] = False

    def _tombstone_partial(self, labels: np.ndarray) -> None:
        present = set(self._index.get_ids_list())
        for label in labels.tolist():
            if label in present:
                with contextlib.suppress(RuntimeError):  # already deleted
                    self._index.mark_deleted(label)

    def _ensure_capacity(self, needed: int) -> None:
        if needed <= self._capacity:
            return
        new_capacity = max(needed, int(self._capacity * _GROWTH))
        self._index.resize_index(new_capacity)
        vectors = np.zeros((new_capacity, self._dim), dtype=np.float32)
        vectors[: self._next_label] = self._vectors[: self._next_label]
        live = np.zeros(new_capacity, dtype=bool)
        live[: self._next_label] = self._live[: self._next_label]
        self._vectors, self._live = vectors, live
        self._capacity = new_capacity

    def _exact_search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # Score every slot in place (no gather copy) and sink tombstones; callers ensure live > 0,
        # and k is capped at live so a sunk row can never be returned.
        used = self._next_label
        scores = np.asarray(self._vectors[:used] @ query, dtype=np.float32)
        scores[~self._live[:used]] = -np.inf
        return _top_k(scores, min(k, len(self._id_labels)))


def _normalise(vector: np.ndarray, dim: int) -> np.ndarray:
    if vector.shape != (dim,):
        raise ValueError(f"expected a vector of shape ({dim},), got {vector.shape}")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("vector must be finite and non-zero")
    # Re-normalising makes 'ip' equal cosine even if a caller forgot, and is a no-op otherwise.
    return (vector / norm).astype(np.float32, copy=False)


def _prepare(items: Iterable[tuple[str, np.ndarray]], dim: int) -> tuple[list[str], np.ndarray]:
    """Validate and normalise everything up front; a repeated id keeps its last vector."""
    latest: dict[str, np.ndarray] = {}
    for id_, vector in items:
        if not isinstance(id_, str):
            raise TypeError(f"gallery ids are str, got {type(id_).__name__}")
        latest.pop(id_, None)  # re-insert so order follows the last occurrence
        latest[id_] = _normalise(np.asarray(vector, dtype=np.float32), dim)
    ids = list(latest)
    if not ids:
        return ids, np.empty((0, dim), dtype=np.float32)
    return ids, np.ascontiguousarray(np.stack(list(latest.values())), dtype=np.float32)
