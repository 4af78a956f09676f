"""The gallery: searches combining the exact store and the graph, exact re-rank, verification, locking.

A gallery holds L2-normalised face templates for one flight (boarding) or one departure window
(e-channels, lounges). Up to ``exact_max`` faces every search is exhaustive. Above that, an hnswlib
graph finds a short list of candidates; the scores we return are always recomputed exactly from
our own copy of the vectors (``exact.py``), because a decision must never rest on an approximate
score. The graph is ``graph.py``; the parameters ``params.py``.

Why the graph looks the way it does (measured by ``ops/bench/galleries.py`` on LFW templates
plus random distractors, 2 shared cores, hnswlib built without -march=native):

* Face templates are nearly orthogonal to everything but their mates, so greedy graph search has
  little to follow. When it misses, the search is lost: it wandered among the crowd, and the best
  it found is a crowd score (at 42,000 faces every lost search ended at 0.34 at most, while the
  true best ran up to 0.75). Hence a cheap graph (small ``M`` and ``ef_construction``: a 42,000-face
  window must be rebuilt in seconds) plus ``verify_below``: a result whose best score is under it
  is re-checked exhaustively. It sits above the highest threshold any touchpoint applies (at the
  largest clearance group, plus a margin: 0.56), so near any threshold in use the graph never
  decides alone; ~30 % of mated searches at 42,000 are re-checked. A cutoff below every
  decision (the lowest threshold minus the decision margin plus 0.05, 0.37) re-checked only ~3 %
  and kept recall@1 at 1.0 on the bench's probes, but on one build of the real 42,000-face
  registry the graph missed a probe's best face and found its LFW alias above the threshold: a
  wrong-person accept where the exhaustive search proceeds with the right person. Not adopted.
* The runner-up: the margin rule turns on a second strong face (the same person enrolled twice, a
  lookalike), and the cheap graph can lack the probe's edge to it (measured: 5 of 1,211 such
  probes, twice turning a refer into a proceed). It is a neighbour of the best too, so a trusted
  result also takes the best's own graph neighbours into the short list (``best_neighbours``):
  0 of 1,211 missed in six builds, for a second graph search (~0.3 ms) instead of an exhaustive
  pass. Not a proof: one build missed one probe's best (ops/results/galleries.md).
* Checks that bound the exact scores of the unseen faces (a projected or quantised scan plus
  Cauchy-Schwarz) were measured and rejected: with 512-d templates the bound left most of the
  gallery to re-score, so it cost as much as the exhaustive pass it was meant to avoid.
* The graph itself (projected, sharded): see ``graph.py``.

Over ~300 lines only because of this docstring: the measurements stay beside the code they set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec
import numpy as np

from flighttoken.galleries.exact import ExactStore, exact_top_k, normalise, prepare
from flighttoken.galleries.graph import Graph
from flighttoken.galleries.params import DEFAULT_DIM, MIN_CAPACITY, IndexParams
from flighttoken.galleries.rwlock import RWLock

__all__ = ["Candidate", "Gallery"]


class Candidate(msgspec.Struct, frozen=True):
    """One search hit. ``score`` is the exact cosine similarity in [-1, 1]."""

    id: str
    score: float


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

    * ``build`` — at most ``exact_max`` items: a copy (milliseconds). Above: the graph, about 7 s
      of CPU for 42,000 faces at ``graph_dim`` 96 (7 s at 192), spread over ``params.threads()``
      threads. It builds a private gallery nobody else can see; the caller swaps its reference when done.
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
    (None: never) the search is redone exhaustively, else (``best_neighbours``) the best's own
    neighbours are re-scored too. Returned scores are always exact.

    Tombstones stay in the graph (they are still traversed) but their vectors do not: removing or
    replacing an id zeroes its row of the exact store and its vector in the graph at once, so a
    removed face is nowhere in the gallery's memory. ``deleted_count`` tells the owner when a
    rebuild from the database is worth it.
    """

    def __init__(self, params: IndexParams | None = None, *, dim: int = DEFAULT_DIM, capacity: int = 1024) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self._params = params or IndexParams()
        self._exact_max = max(int(self._params.exact_max), 0)
        self._store = ExactStore(dim, capacity)
        self._graph: Graph | None = None  # built once the gallery outgrows exact_max
        self._lock = RWLock()
        self.verifications = 0  # graph results re-checked exhaustively (statistics; racy increments)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def build(cls, items: Iterable[tuple[str, np.ndarray]], params: IndexParams | None = None, *,
              dim: int = DEFAULT_DIM, headroom: float = 0.25) -> Gallery:
        """Build a complete gallery from ``items`` (e.g. a rebuild from PostgreSQL). Blocking.

        The result is private until returned, so callers never see it half-built: they swap
        their reference to it in one assignment. ``headroom`` sizes capacity for later adds
        without an immediate resize. ``params.threads()`` (default: all cores) only applies to
        this bulk insertion; searches on the result stay single-threaded. A repeated id keeps its
        last vector, as with ``add``.
        """
        ids, matrix = prepare(items, dim)
        gallery = cls(params, dim=dim, capacity=int(len(ids) * (1.0 + max(headroom, 0.0))) + 1)
        gallery._add_prepared(ids, matrix, gallery._params.threads())
        return gallery

    def copy(self) -> Gallery:
        """An independent gallery with the same faces, graph and parameters (a purpose gallery
        built from a wide one: see ``purpose.py``). Blocking; takes the read lock."""
        with self._lock.read():
            twin = Gallery(self._params, dim=self.dim, capacity=MIN_CAPACITY)
            twin._store = self._store.copy()
            twin._graph = None if self._graph is None else self._graph.copy()
            return twin

    # ---- writes -------------------------------------------------------------------------------

    def add(self, items: Sequence[tuple[str, np.ndarray]], *, num_threads: int = 1) -> None:
        """Insert or replace ``(id, vector)`` pairs. Blocking; holds the write lock.

        Vectors are validated (shape ``(dim,)``, finite, non-zero) and L2-normalised before
        anything changes, so a bad item leaves the gallery untouched. A repeated id within one
        call keeps its last vector.
        """
        ids, matrix = prepare(items, self.dim)
        self._add_prepared(ids, matrix, num_threads)

    def remove(self, ids: Iterable[str]) -> None:
        """Tombstone ``ids`` and overwrite their vectors (here and in the graph); unknown ids are
        ignored. Takes the write lock."""
        wanted = [ids] if isinstance(ids, str) else list(ids)
        with self._lock.write():
            id_labels = self._store.id_labels
            labels = [label for label in (id_labels.pop(i, None) for i in wanted) if label is not None]
            self._tombstone(labels)

    def clear(self) -> None:
        """Remove every id (a gallery being dropped): nothing biometric stays behind in its arrays,
        even for a caller still holding a reference to it. Takes the write lock."""
        with self._lock.write():
            labels = list(self._store.id_labels.values())
            self._store.id_labels.clear()
            self._tombstone(labels)

    def set_ef(self, ef: int) -> None:
        """Change hnswlib's search breadth (recall/latency). Takes the write lock."""
        if ef <= 0:
            raise ValueError("ef must be positive")
        with self._lock.write():
            self._params = msgspec.structs.replace(self._params, ef=ef)
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
        query = normalise(np.asarray(vector, dtype=np.float32), self.dim)
        with self._lock.read():
            return self._search_locked(query, k)

    def search_now(self, vector: np.ndarray, k: int = 2) -> list[Candidate] | None:
        """``search`` if it can run without waiting and exhaustively (microseconds: safe on an event
        loop), else None: the caller then uses ``search`` through the executor."""
        if k < 1:
            raise ValueError("k must be at least 1")
        if len(self._store) > self._exact_max:
            return None
        query = normalise(np.asarray(vector, dtype=np.float32), self.dim)
        with self._lock.try_read() as acquired:
            if not acquired or len(self._store) > self._exact_max:  # a write got in first
                return None
            return self._search_locked(query, k)

    def _search_locked(self, query: np.ndarray, k: int) -> list[Candidate]:
        store, verify_below = self._store, self._params.verify_below
        live = len(store)
        if live == 0:
            return []
        n_query = max(k, self._params.rerank_k)
        if self._graph is None or live <= self._exact_max or n_query >= live:
            labels, scores = store.search(query, k)
        else:
            short = self._short_list(query, n_query)
            rows, scores = exact_top_k(store.vectors[short], query, k)
            labels = short[rows]
            if verify_below is not None and (not len(scores) or scores[0] < verify_below):
                # A weak best match is where graph search misses (the true one is barely
                # closer than the crowd); a strong one it finds. Weak results are re-checked.
                labels, scores = store.search(query, k)
                self.verifications += 1
            elif self._params.best_neighbours and len(labels):
                # A second strong face (the same person enrolled twice, a lookalike) is a
                # neighbour of the best as much as of the probe, and the cheap graph can lack the
                # probe's edge to it: the best's own neighbours join the short list.
                short = np.union1d(short, self._short_list(store.vectors[labels[0]], n_query))
                rows, scores = exact_top_k(store.vectors[short], query, k)
                labels = short[rows]
        out: list[Candidate] = []
        for label, score in zip(labels.tolist(), scores.tolist(), strict=True):
            id_ = store.label_ids[label]
            if id_ is not None:  # only live labels are ever proposed; cheap belt and braces
                out.append(Candidate(id=id_, score=score))
        return out

    def __len__(self) -> int:
        """Number of live (non-removed) ids."""
        return len(self._store)

    def contains(self, id_: str) -> bool:
        return id_ in self._store.id_labels

    __contains__ = contains

    def ids(self) -> list[str]:
        """Snapshot of the live ids, in no particular order."""
        with self._lock.read():
            return list(self._store.id_labels)

    def vector(self, id_: str) -> np.ndarray:
        """A copy of the stored (normalised) vector for ``id_``; ``KeyError`` if not live."""
        with self._lock.read():
            return self._store.vectors[self._store.id_labels[id_]].copy()

    @property
    def dim(self) -> int:
        return self._store.dim

    @property
    def params(self) -> IndexParams:
        return self._params

    @property
    def capacity(self) -> int:
        """Label slots allocated; live ids and tombstones both use one."""
        return self._store.capacity

    @property
    def deleted_count(self) -> int:
        """Tombstoned labels still held (removed or replaced ids)."""
        return self._store.deleted_count

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
            f"Gallery(live={len(self)}, deleted={self.deleted_count}, capacity={self.capacity}, "
            f"dim={self.dim}, graph_shards={self.graph_shards})"
        )

    # ---- internals ----------------------------------------------------------------------------

    def _add_prepared(self, ids: list[str], matrix: np.ndarray, num_threads: int) -> None:
        if not ids:
            return
        store = self._store
        with self._lock.write():
            start = store.next_label
            labels = store.claim(matrix)
            new_graph = None
            if self._graph is not None:
                self._graph.insert(labels, self._graph.project(matrix), num_threads)
                store.in_graph[labels] = True
            else:
                replaced = [store.id_labels[i] for i in ids if i in store.id_labels]
                if len(store) - len(replaced) + len(ids) > self._exact_max:
                    # Built before any id changes hands, over exactly the labels live afterwards.
                    keep = store.live[:start].copy()
                    keep[replaced] = False
                    new_graph = self._new_graph(np.concatenate([np.flatnonzero(keep), labels]), num_threads)
            retired = store.bind(ids, labels)
            if new_graph is not None:
                self._graph = new_graph
            self._tombstone(retired)

    def _new_graph(self, labels: np.ndarray, num_threads: int) -> Graph:
        """A graph over ``labels`` (ascending). Nothing is published unless it all succeeds."""
        labels = labels.astype(np.int64, copy=False)
        graph = Graph.build(labels, self._store.vectors[labels], self._params, num_threads)
        self._store.in_graph[labels] = True
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
                rows, _ = self._store.search(query, want, lo, min(lo + graph.shard_size, self._store.next_label))
                lists.append(rows)
        return np.concatenate(lists) if lists else np.empty(0, dtype=np.int64)

    def _tombstone(self, labels: list[int]) -> None:
        """Retire labels no id points to any more, overwriting their vectors with zeros: a removed
        face must not stay in memory until a rebuild (exact store and graph alike)."""
        if not labels:
            return
        in_graph = self._store.retire(labels)
        if self._graph is not None and len(in_graph):
            self._graph.erase(in_graph)
