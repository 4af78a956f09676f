"""In-memory face galleries (per flight, per departure window), rebuilt from PostgreSQL."""

from flighttoken.galleries.exact import exact_top_k
from flighttoken.galleries.index import Candidate, Gallery
from flighttoken.galleries.params import DEFAULT_DIM, IndexParams

__all__ = ["DEFAULT_DIM", "Candidate", "Gallery", "IndexParams", "exact_top_k"]
