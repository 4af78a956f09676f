"""In-memory face gallery: exact search when small, an hnswlib graph when large, exact re-rank.

A gallery holds L2-normalised face templates for one flight (boarding) or one departure window
(e-channels, lounges). Up to ``exact_max`` faces every search is exhaustive. Above that, an hnswlib
graph finds a short list of candidates; the scores we return are always recomputed exactly from
our own copy of the vectors, because a decision must never rest on an approximate score.

Why the graph looks the way it does (measured by ``ops/bench/galleries.py`` on LFW templates
plus random distractors, 2 shared cores, hnswlib built without -march=native):

* Face templates are nearly orthogonal to everything but their mates, so greedy graph search has
  little to follow, and the misses it makes are weak matches (the true best barely above the
  crowd). Hence a cheap graph (small ``M`` and ``ef_construction``: a 42,000-face window must be
  rebuilt in seconds) plus ``verify_below``: a result whose best score is under it is re-checked by
  exhaustive search. Strong matches come from the graph in ~1 ms; no weak one is ever missed.
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
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Literal

import hnswlib
import msgspec
import numpy as np

__all__ = ["DEFAULT_DIM", "Candidate", "Gallery", "exact_top_k"]

DEFAULT_DIM = 512
Space = Literal["ip", "cosine"]

# Capacity grows by this factor (at least) when full: amortises the copy of the matrix (and of a
# graph shard) over many adds.
_GROWTH = 1.5
_MIN_CAPACITY = 64
# A principal-direction fit needs several samples per kept direction to be worth trusting; with
# fewer vectors the graph keeps the full dimension. (Fitting on a sample of 8,192 out of 42,000
# saved ~1.5 s of CPU but doubled the graph's misses in ops/bench/galleries.py.)
_MIN_FIT_PER_DIM = 4
# Removed labels are overwritten in place while they are fewer than one in this many of their
# shard's slots; more rewrite the shard once (measured: one in-place overwrite, ~3 ms at 42,000,
# costs about as much as copying ~2,500 slots of a shard).
_REWRITE_AT = 2048


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
    def try_read(self) -> Iterator[bool]:
        """Like ``read`` but never waits: yields False (holding nothing) if a writer is in or queued."""
        with self._cond:
            if self._writer or self._writers_waiting:
                acquired = False
            else:
                self._readers += 1
                acquired = True
        try:
            yield acquired
        finally:
            if acquired:
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


class _Graph:
    """The approximate part of a large gallery: hnswlib shards over projected vectors.

    Shard ``s`` holds labels ``[s * shard_size, (s + 1) * shard_size)``: labels only grow, so they
    fill shards in order, and a label's shard is arithmetic. A shard grows (hnswlib's resize, a
    copy) as labels arrive, up to ``shard_size``.
    """

    def __init__(self, basis: np.ndarray | None, dim: int, shard_size: int, params: dict) -> None:
        self.basis = basis  # (dim, graph_dim), or None: the graph holds the full vectors
        self.dim = dim if basis is None else basis.shape[1]
        self.shard_size = shard_size
        self.params = params  # space, M, ef_construction, ef, random_seed
        self.shards: list[hnswlib.Index | None] = []
        self.live: list[int] = []  # live labels per shard

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
            index = hnswlib.Index(space=p["space"], dim=self.dim)
            index.init_index(max_elements=min(self.shard_size, max(_MIN_CAPACITY, int(adding * 1.25))), M=p["M"],
                             ef_construction=p["ef_construction"], random_seed=p["random_seed"])
            # ef is index-wide state in hnswlib: set only under the gallery's write lock.
            index.set_ef(p["ef"])
            # Searches get their concurrency from the server's threads, one per request.
            index.set_num_threads(1)
            self.shards[s] = index
        needed = index.get_current_count() + adding  # tombstones keep their slots
        if needed > index.get_max_elements():
            index.resize_index(min(self.shard_size, max(needed, int(index.get_max_elements() * _GROWTH))))
        return index

    def insert(self, labels: np.ndarray, projected: np.ndarray, num_threads: int) -> None:
        """Add labelled rows shard by shard, in parallel across shards. On failure, every label of
        this call that reached a shard is tombstoned there, then the error propagates."""
        groups = _by_shard(labels, self.shard_size)
        for s, rows in groups:
            self.shard(s, len(rows))  # created and sized here, on one thread
        per_shard = max(1, num_threads // max(len(groups), 1))

        def add(group: tuple[int, np.ndarray]) -> None:
            s, rows = group
            assert self.shards[s] is not None
            self.shards[s].add_items(projected[rows], labels[rows], num_threads=per_shard)

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
        for s, rows in _by_shard(labels, self.shard_size):
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

    def _zeroed(self, index: hnswlib.Index, labels: np.ndarray) -> hnswlib.Index:
        """A copy of ``index`` (through hnswlib's pickle state) with ``labels``' vectors zeroed."""
        state = index.__getstate__()
        params = state[0]
        internal = dict(zip(params["label_lookup_external"].tolist(), params["label_lookup_internal"].tolist(),
                            strict=True))
        rows = params["data_level0"].reshape(-1, params["size_data_per_element"])
        start = params["offset_data"]
        for label in labels.tolist():
            rows[internal[label], start : start + self.dim * 4] = 0
        copy = hnswlib.Index.__new__(hnswlib.Index)  # pickle's path: unpickling constructs from the state
        copy.__setstate__(state)
        copy.set_ef(self.params["ef"])
        copy.set_num_threads(1)
        return copy

    def set_ef(self, ef: int) -> None:
        self.params["ef"] = ef
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


class Gallery:
    """A time-bounded face gallery: exact search, or HNSW + exact re-rank; thread-safe.

    Ids are opaque strings (token ids). Internal labels are ints assigned from a counter and never
    reused within one gallery, so a label seen by a search can never silently mean another
    person. Replacing an id tombstones its old label and inserts a new one.

    Locking: searches share a read lock and run concurrently; ``add``, ``remove``, ``set_ef`` and
    resizing take the write lock, so no search ever sees a half-applied write. hnswlib itself is
    not safe for ``knn_query`` concurrent with ``add_items``.

    The graph is built lazily, the first time the gallery holds more than ``exact_max`` live ids
    (at ``build`` or during an ``add``): flights, watchlists and small windows never pay for one.
    Its projection is fitted on the vectors present then; a rebuild from the database refits it.

    Cost (all methods are synchronous and blocking; from async code use ``run_blocking``, except
    ``search_now``):

    * ``build`` — at most ``exact_max`` items: a copy (milliseconds). Above: the graph, about 10 s
      of CPU for 42,000 faces with the service defaults, spread over ``num_threads`` threads. It
      builds a private gallery nobody else can see; the caller swaps its reference when done.
    * ``add`` — holds the write lock for the whole batch: a copy per item, plus one HNSW insertion
      per item once there is a graph, plus an occasional resize (a copy of the matrix or of the
      graph). The ``add`` that first crosses ``exact_max`` builds the graph (~0.1-0.3 s at 1,000
      faces). Keep batches small: every search waits while it runs.
    * ``remove`` — zeroes the rows; with a graph, ~3 ms a removed face in place, or one rewrite of
      the shard for many (~50 ms at 42,000). ``set_ef`` — cheap. Both take the write lock.
    * ``search`` — exhaustive: ~0.02 ms at 420 faces, ~0.2 ms at 1,024 (in cache); graph: ~0.5-1 ms
      at 42,000, plus an exhaustive pass (~5-15 ms, memory-bound) for the few weak results.
    * ``search_now`` — ``search`` for galleries of at most ``exact_max``, or None rather than wait.
    * ``__len__``, ``contains``, ``ids``, ``vector`` — cheap reads (``ids`` is O(n)).

    Search: a gallery with at most ``exact_max`` live ids is scored exhaustively (exact top-k);
    a larger one asks each shard for ``max(k, rerank_k)`` candidates with ``ef`` (hnswlib searches
    with ``max(ef, that)``) and re-scores them all exactly; if the best is below ``verify_below``
    (None: never) the search is redone exhaustively. Returned scores are always exact.

    Tombstones stay in the graph (they are still traversed) but their vectors do not: removing or
    replacing an id zeroes its row of the exact store and its vector in the graph at once, so a
    removed face is nowhere in the gallery's memory. ``deleted_count`` tells the owner when a
    rebuild from the database is worth it.
    """

    def __init__(
        self,
        dim: int = DEFAULT_DIM,
        *,
        space: Space = "ip",
        M: int = 12,  # hnswlib's name for it
        ef_construction: int = 32,
        ef: int = 128,
        rerank_k: int = 32,
        exact_max: int = 1024,
        capacity: int = 1024,
        random_seed: int = 100,
        graph_dim: int = 192,
        shard_size: int = 65536,
        verify_below: float | None = None,
    ) -> None:
        if space not in ("ip", "cosine"):
            raise ValueError(f"space must be 'ip' or 'cosine', not {space!r}")
        if min(dim, M, ef_construction, ef, rerank_k, graph_dim, shard_size) <= 0:
            raise ValueError("dim, M, ef_construction, ef, rerank_k, graph_dim and shard_size must be positive")
        self._dim = dim
        self._space: Space = space
        self._rerank_k = rerank_k
        self._exact_max = max(int(exact_max), 0)
        self._capacity = max(int(capacity), _MIN_CAPACITY)
        self._graph_dim = graph_dim
        self._shard_size = shard_size
        self._verify_below = verify_below
        self._graph_params = {"space": space, "M": M, "ef_construction": ef_construction, "ef": ef,
                              "random_seed": random_seed}
        self._graph: _Graph | None = None  # built once the gallery outgrows exact_max
        # Row i holds the (normalised) vector of label i; rows of tombstoned labels are kept
        # but never read through a live id.
        self._vectors = np.zeros((self._capacity, dim), dtype=np.float32)
        self._live = np.zeros(self._capacity, dtype=bool)
        self._in_graph = np.zeros(self._capacity, dtype=bool)  # label was inserted into the graph
        self._label_ids: list[str | None] = []  # label -> id (None once tombstoned)
        self._id_labels: dict[str, int] = {}  # id -> live label
        self._next_label = 0
        self._lock = _RWLock()
        self.verifications = 0  # graph results re-checked exhaustively (statistics; racy increments)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        items: Iterable[tuple[str, np.ndarray]],
        *,
        dim: int = DEFAULT_DIM,
        space: Space = "ip",
        M: int = 12,
        ef_construction: int = 32,
        ef: int = 128,
        rerank_k: int = 32,
        exact_max: int = 1024,
        headroom: float = 0.25,
        num_threads: int | None = None,
        random_seed: int = 100,
        graph_dim: int = 192,
        shard_size: int = 65536,
        verify_below: float | None = None,
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
            graph_dim=graph_dim,
            shard_size=shard_size,
            verify_below=verify_below,
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
        """Tombstone ``ids`` and overwrite their vectors (here and in the graph); unknown ids are
        ignored. Takes the write lock."""
        wanted = [ids] if isinstance(ids, str) else list(ids)
        with self._lock.write():
            labels = [label for label in (self._id_labels.pop(i, None) for i in wanted) if label is not None]
            self._tombstone(labels)

    def clear(self) -> None:
        """Remove every id (a gallery being dropped): nothing biometric stays behind in its arrays,
        even for a caller still holding a reference to it. Takes the write lock."""
        with self._lock.write():
            labels = list(self._id_labels.values())
            self._id_labels.clear()
            self._tombstone(labels)

    def set_ef(self, ef: int) -> None:
        """Change hnswlib's search breadth (recall/latency). Takes the write lock."""
        if ef <= 0:
            raise ValueError("ef must be positive")
        with self._lock.write():
            self._graph_params["ef"] = ef
            if self._graph is not None:
                self._graph.set_ef(ef)

    # ---- reads --------------------------------------------------------------------------------

    def search(self, vector: np.ndarray, k: int = 2) -> list[Candidate]:
        """Top-``k`` live ids by exact cosine similarity, best first (fewer if the gallery is smaller).

        Galleries of at most ``exact_max`` live ids (a flight) are searched exhaustively: at that
        size a matrix-vector product costs less than a graph search and cannot miss. Larger ones
        ask every shard for ``max(k, rerank_k)`` candidates and recompute their scores exactly
        from the stored vectors, so every returned score is exact, and a ranking error can only
        come from a true neighbour missing from the short lists.
        """
        if k < 1:
            raise ValueError("k must be at least 1")
        query = _normalise(np.asarray(vector, dtype=np.float32), self._dim)
        with self._lock.read():
            return self._search_locked(query, k)

    def search_now(self, vector: np.ndarray, k: int = 2) -> list[Candidate] | None:
        """``search`` if it can run without waiting and exhaustively (microseconds: safe on an event
        loop), else None: the caller then uses ``search`` through the executor."""
        if k < 1:
            raise ValueError("k must be at least 1")
        if len(self._id_labels) > self._exact_max:
            return None
        query = _normalise(np.asarray(vector, dtype=np.float32), self._dim)
        with self._lock.try_read() as acquired:
            if not acquired or len(self._id_labels) > self._exact_max:  # a write got in first
                return None
            return self._search_locked(query, k)

    def _search_locked(self, query: np.ndarray, k: int) -> list[Candidate]:
        live = len(self._id_labels)
        if live == 0:
            return []
        n_query = max(k, self._rerank_k)
        if self._graph is None or live <= self._exact_max or n_query >= live:
            labels, scores = self._exact_search(query, k)
        else:
            short = self._short_list(query, n_query)
            rows, scores = exact_top_k(self._vectors[short], query, k)
            labels = short[rows]
            if self._verify_below is not None and (not len(scores) or scores[0] < self._verify_below):
                # A weak best match is where graph search misses (the true one is barely
                # closer than the crowd); a strong one it finds. Weak results are re-checked.
                labels, scores = self._exact_search(query, k)
                self.verifications += 1
        out: list[Candidate] = []
        for label, score in zip(labels.tolist(), scores.tolist(), strict=True):
            id_ = self._label_ids[label]
            if id_ is not None:  # only live labels are ever proposed; cheap belt and braces
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
        """Tombstoned labels still held (removed or replaced ids)."""
        return self._next_label - len(self._id_labels)

    @property
    def graph_shards(self) -> int:
        """hnswlib shards in use: 0 while the gallery is searched exhaustively only."""
        return 0 if self._graph is None else sum(s is not None for s in self._graph.shards)

    @property
    def graph_dim(self) -> int | None:
        """Dimension the graph works in (``dim`` when not projected); None without a graph."""
        return None if self._graph is None else self._graph.dim

    def __repr__(self) -> str:
        return (
            f"Gallery(live={len(self)}, deleted={self.deleted_count}, capacity={self._capacity}, "
            f"dim={self._dim}, space={self._space!r}, graph_shards={self.graph_shards})"
        )

    # ---- internals ----------------------------------------------------------------------------

    def _add_prepared(self, ids: list[str], matrix: np.ndarray, num_threads: int) -> None:
        n = len(ids)
        if n == 0:
            return
        with self._lock.write():
            self._ensure_capacity(self._next_label + n)
            start = self._next_label
            labels = np.arange(start, start + n, dtype=np.int64)
            self._vectors[start : start + n] = matrix
            # Claim the labels before the graph sees them: if an insertion fails part-way, the
            # labels it did insert are tombstoned rather than ever being handed out again.
            self._next_label = start + n
            self._label_ids.extend([None] * n)
            new_graph = None
            if self._graph is not None:
                self._graph.insert(labels, self._graph.project(matrix), num_threads)
                self._in_graph[start : start + n] = True
            else:
                replaced = [self._id_labels[i] for i in ids if i in self._id_labels]
                if len(self._id_labels) - len(replaced) + n > self._exact_max:
                    # Built before any id changes hands, over exactly the labels live afterwards.
                    keep = self._live[:start].copy()
                    keep[replaced] = False
                    new_graph = self._new_graph(np.concatenate([np.flatnonzero(keep), labels]), num_threads)
            retired = []
            for id_, label in zip(ids, labels.tolist(), strict=True):
                old = self._id_labels.get(id_)
                if old is not None:
                    retired.append(old)
                self._id_labels[id_] = label
                self._label_ids[label] = id_
                self._live[label] = True
            if new_graph is not None:
                self._graph = new_graph
            self._tombstone(retired)

    def _new_graph(self, labels: np.ndarray, num_threads: int) -> _Graph:
        """A graph over ``labels`` (ascending). Nothing is published unless it all succeeds."""
        labels = labels.astype(np.int64, copy=False)
        matrix = self._vectors[labels]
        graph = _Graph(_fit_basis(matrix, self._graph_dim), self._dim, self._shard_size, dict(self._graph_params))
        graph.insert(labels, graph.project(matrix), num_threads)
        self._in_graph[labels] = True
        return graph

    def _short_list(self, query: np.ndarray, n_query: int) -> np.ndarray:
        """Candidate labels from every shard (at most ``n_query`` each), for exact re-ranking."""
        graph = self._graph
        assert graph is not None
        projected = graph.project(query[None, :])
        lists = []
        for s, index in enumerate(graph.shards):
            live = graph.live[s]
            if index is None or live == 0:
                continue
            want = min(n_query, live)
            try:
                found, _ = index.knn_query(projected, k=want, num_threads=1)
                lists.append(found[0].astype(np.int64))
            except RuntimeError:
                # hnswlib raises when it cannot fill k results, which tombstones make possible
                # even with k <= live; an exhaustive look at this one shard cannot fail that way.
                lo = s * graph.shard_size
                rows, _ = self._exact_search(query, want, lo, min(lo + graph.shard_size, self._next_label))
                lists.append(rows)
        return np.concatenate(lists) if lists else np.empty(0, dtype=np.int64)

    def _tombstone(self, labels: list[int]) -> None:
        """Retire labels no id points to any more, overwriting their vectors with zeros: a removed
        face must not stay in memory until a rebuild (exact store and graph alike)."""
        if not labels:
            return
        rows = np.asarray(labels, dtype=np.int64)
        # Our own books first: should the graph fail below, a label it still proposes scores 0
        # against a zero row and maps to no id, so it can never be returned.
        self._vectors[rows] = 0.0
        self._live[rows] = False
        for label in labels:
            self._label_ids[label] = None
        if self._graph is not None:
            in_graph = np.sort(rows[self._in_graph[rows]])
            if len(in_graph):
                self._graph.erase(in_graph)

    def _ensure_capacity(self, needed: int) -> None:
        if needed <= self._capacity:
            return
        new_capacity = max(needed, int(self._capacity * _GROWTH))
        used = self._next_label
        vectors = np.zeros((new_capacity, self._dim), dtype=np.float32)
        vectors[:used] = self._vectors[:used]
        live = np.zeros(new_capacity, dtype=bool)
        live[:used] = self._live[:used]
        in_graph = np.zeros(new_capacity, dtype=bool)
        in_graph[:used] = self._in_graph[:used]
        self._vectors, self._live, self._in_graph = vectors, live, in_graph
        self._capacity = new_capacity

    def _exact_search(self, query: np.ndarray, k: int, lo: int = 0,
                      hi: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        hi = self._next_label if hi is None else hi
        live = self._live[lo:hi]
        n_live = int(np.count_nonzero(live))
        if 2 * n_live < hi - lo:
            # Mostly tombstones (a window whose early flights have left): copying out the live
            # rows reads less memory than scoring every slot.
            rows = np.flatnonzero(live)
            found, best = exact_top_k(self._vectors[rows + lo], query, k)
            return rows[found] + lo, best
        # Score every slot in place and sink the tombstones; k is capped at the live count of the
        # range, so a sunk row can never be returned.
        scores = np.asarray(self._vectors[lo:hi] @ query, dtype=np.float32)
        scores[~live] = -np.inf
        rows, best = _top_k(scores, min(k, n_live))
        return rows + lo, best


def _by_shard(labels: np.ndarray, shard_size: int) -> list[tuple[int, np.ndarray]]:
    """(shard, row positions in ``labels``) for each shard ``labels`` touch (labels ascend)."""
    shard_of = labels // shard_size
    cuts = np.flatnonzero(np.diff(shard_of)) + 1
    return [(int(shard_of[rows[0]]), rows) for rows in np.split(np.arange(len(labels)), cuts)]


def _fit_basis(matrix: np.ndarray, graph_dim: int) -> np.ndarray | None:
    """Top ``graph_dim`` principal directions of the rows (uncentred: inner products are what the
    graph must preserve), or None when projecting would not pay or cannot be fitted well."""
    n, dim = matrix.shape
    if graph_dim >= dim or n < _MIN_FIT_PER_DIM * graph_dim:
        return None
    second_moment = (matrix.T @ matrix).astype(np.float64)
    _, vectors = np.linalg.eigh(second_moment)  # ascending eigenvalues
    return np.ascontiguousarray(vectors[:, ::-1][:, :graph_dim], dtype=np.float32)


def _normalise(vector: np.ndarray, dim: int) -> np.ndarray:
    if vector.shape != (dim,):
        raise ValueError(f"expected a vector of shape ({dim},), got {vector.shape}")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("vector must be finite and non-zero")
    # Re-normalising makes 'ip' equal cosine even if a caller forgot, and is a no-op otherwise.
    return (vector / norm).astype(np.float32, copy=False)


def _prepare(items: Iterable[tuple[str, np.ndarray]], dim: int) -> tuple[list[str], np.ndarray]:
    """Validate and normalise everything up front, in bulk; a repeated id keeps its last vector."""
    last: dict[str, int] = {}  # id -> position of its last occurrence
    vectors: list[np.ndarray] = []
    for id_, vector in items:
        if not isinstance(id_, str):
            raise TypeError(f"gallery ids are str, got {type(id_).__name__}")
        array = np.asarray(vector, dtype=np.float32)
        if array.shape != (dim,):
            raise ValueError(f"expected a vector of shape ({dim},), got {array.shape}")
        last.pop(id_, None)  # re-insert so order follows the last occurrence
        last[id_] = len(vectors)
        vectors.append(array)
    ids = list(last)
    if not ids:
        return ids, np.empty((0, dim), dtype=np.float32)
    matrix = np.stack(vectors)[list(last.values())]
    norms = np.linalg.norm(matrix, axis=1)
    if not (np.all(np.isfinite(norms)) and np.all(norms > 0.0)):
        raise ValueError("vectors must be finite and non-zero")
    # Re-normalising makes 'ip' equal cosine even if a caller forgot, and is a no-op otherwise.
    return ids, np.ascontiguousarray(matrix / norms[:, None], dtype=np.float32)
