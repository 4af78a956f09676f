"""The exact store of a gallery: every normalised vector by label, the id <-> label maps, tombstones.

Labels are ints handed out from a counter and never reused within one store, so a label seen by a
search can never silently mean another person. A retired label's row is overwritten with zeros at
once: a removed face must not stay in memory until a rebuild. Scores from here are exact; the
graph (``graph.py``) only ever proposes labels for this store to score. Not thread-safe: the
gallery (``index.py``) holds its lock around every call.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from flighttoken.galleries.params import GROWTH, MIN_CAPACITY

__all__ = ["ExactStore", "exact_top_k", "normalise", "prepare"]


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


class ExactStore:
    """Row ``i`` of ``vectors`` holds the (normalised) vector of label ``i``; rows of tombstoned
    labels are zeros and never read through a live id."""

    def __init__(self, dim: int, capacity: int) -> None:
        self.dim = dim
        self.capacity = max(int(capacity), MIN_CAPACITY)
        self.vectors = np.zeros((self.capacity, dim), dtype=np.float32)
        self.live = np.zeros(self.capacity, dtype=bool)
        self.in_graph = np.zeros(self.capacity, dtype=bool)  # label was inserted into the graph
        self.label_ids: list[str | None] = []  # label -> id (None once tombstoned)
        self.id_labels: dict[str, int] = {}  # id -> live label
        self.next_label = 0

    def __len__(self) -> int:
        """Number of live (non-removed) ids."""
        return len(self.id_labels)

    @property
    def deleted_count(self) -> int:
        """Tombstoned labels still held (removed or replaced ids)."""
        return self.next_label - len(self.id_labels)

    def claim(self, matrix: np.ndarray) -> np.ndarray:
        """Store ``matrix``'s rows under fresh labels (returned), bound to no id yet.

        Claimed before the graph sees them: if an insertion fails part-way, the labels it did
        insert are tombstoned rather than ever being handed out again.
        """
        n = len(matrix)
        self.ensure_capacity(self.next_label + n)
        start = self.next_label
        self.vectors[start : start + n] = matrix
        self.next_label = start + n
        self.label_ids.extend([None] * n)
        return np.arange(start, start + n, dtype=np.int64)

    def bind(self, ids: list[str], labels: np.ndarray) -> list[int]:
        """Point ``ids`` at their new ``labels``; returns the labels they leave (to retire)."""
        retired = []
        for id_, label in zip(ids, labels.tolist(), strict=True):
            old = self.id_labels.get(id_)
            if old is not None:
                retired.append(old)
            self.id_labels[id_] = label
            self.label_ids[label] = id_
            self.live[label] = True
        return retired

    def retire(self, labels: list[int]) -> np.ndarray:
        """Zero and unbind labels no id points to any more; returns those of them in the graph
        (ascending), for the graph to erase in turn."""
        rows = np.asarray(labels, dtype=np.int64)
        # Our own books first: should the graph fail afterwards, a label it still proposes scores
        # 0 against a zero row and maps to no id, so it can never be returned.
        self.vectors[rows] = 0.0
        self.live[rows] = False
        for label in labels:
            self.label_ids[label] = None
        return np.sort(rows[self.in_graph[rows]])

    def copy(self) -> ExactStore:
        """An independent copy (arrays, maps and label counter)."""
        store = ExactStore(self.dim, self.capacity)
        store.vectors, store.live, store.in_graph = self.vectors.copy(), self.live.copy(), self.in_graph.copy()
        store.label_ids, store.id_labels, store.next_label = list(self.label_ids), dict(self.id_labels), self.next_label
        return store

    def ensure_capacity(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        new_capacity = max(needed, int(self.capacity * GROWTH))
        used = self.next_label
        vectors = np.zeros((new_capacity, self.dim), dtype=np.float32)
        vectors[:used] = self.vectors[:used]
        live = np.zeros(new_capacity, dtype=bool)
        live[:used] = self.live[:used]
        in_graph = np.zeros(new_capacity, dtype=bool)
        in_graph[:used] = self.in_graph[:used]
        self.vectors, self.live, self.in_graph = vectors, live, in_graph
        self.capacity = new_capacity

    def search(self, query: np.ndarray, k: int, lo: int = 0, hi: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` live labels in ``[lo, hi)`` and their scores, best first."""
        hi = self.next_label if hi is None else hi
        live = self.live[lo:hi]
        n_live = int(np.count_nonzero(live))
        if 2 * n_live < hi - lo:
            # Mostly tombstones (a window whose early flights have left): copying out the live
            # rows reads less memory than scoring every slot.
            rows = np.flatnonzero(live)
            found, best = exact_top_k(self.vectors[rows + lo], query, k)
            return rows[found] + lo, best
        # Score every slot in place and sink the tombstones; k is capped at the live count of the
        # range, so a sunk row can never be returned.
        scores = np.asarray(self.vectors[lo:hi] @ query, dtype=np.float32)
        scores[~live] = -np.inf
        rows, best = _top_k(scores, min(k, n_live))
        return rows + lo, best


def normalise(vector: np.ndarray, dim: int) -> np.ndarray:
    if vector.shape != (dim,):
        raise ValueError(f"expected a vector of shape ({dim},), got {vector.shape}")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("vector must be finite and non-zero")
    # Re-normalising makes inner product equal cosine even if a caller forgot; a no-op otherwise.
    return (vector / norm).astype(np.float32, copy=False)


def prepare(items: Iterable[tuple[str, np.ndarray]], dim: int) -> tuple[list[str], np.ndarray]:
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
    # Re-normalising makes inner product equal cosine even if a caller forgot; a no-op otherwise.
    return ids, np.ascontiguousarray(matrix / norms[:, None], dtype=np.float32)
