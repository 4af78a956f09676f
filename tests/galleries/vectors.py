"""Synthetic face templates for the gallery tests, and brute force to check searches against."""

from __future__ import annotations

import uuid

import numpy as np

from flighttoken.galleries import exact_top_k

DIM = 512
TOL = 1e-5


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def random_unit(rng: np.random.Generator, n: int) -> np.ndarray:
    return unit(rng.standard_normal((n, DIM)))


def near(rng: np.random.Generator, rows: np.ndarray, noise: float = 0.9) -> np.ndarray:
    """Another capture of the same faces: cosine ≈ 0.75 to ``rows`` (a typical genuine match),
    while unrelated random templates sit near 0."""
    return unit(rows + noise * rng.standard_normal(rows.shape).astype(np.float32) / np.sqrt(DIM))


def make_ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


def brute(ids: list[str], matrix: np.ndarray, q: np.ndarray, k: int) -> list[tuple[str, float]]:
    rows, scores = exact_top_k(matrix, q, k)
    return [(ids[r], float(s)) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]


def faces_like(rng: np.random.Generator, n: int, rank: int = 48) -> np.ndarray:
    """Templates with the structure real ones have: most variance in a few directions."""
    basis = np.linalg.qr(rng.standard_normal((DIM, rank)))[0].T
    return unit(rng.standard_normal((n, rank)) @ basis + 0.3 * rng.standard_normal((n, DIM)) / np.sqrt(DIM))

