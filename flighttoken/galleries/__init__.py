"""In-memory face galleries (per flight, per departure window), rebuilt from PostgreSQL."""

from flighttoken.galleries.index import DEFAULT_DIM, Candidate, Gallery, exact_top_k

__all__ = ["DEFAULT_DIM", "Candidate", "Gallery", "exact_top_k"]
