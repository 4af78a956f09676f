"""A gallery's parameters: one list (the registry's ``GalleryParams`` only adds how the settings
fill it), checked when made, and ``set_ef`` reaching the graph there is and any built later."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from flighttoken.galleries import Gallery, IndexParams
from flighttoken.galleries.params import GalleryParams
from tests.galleries.vectors import make_ids, random_unit


def test_the_registry_params_are_the_index_params() -> None:
    assert issubclass(GalleryParams, IndexParams)
    assert GalleryParams.__struct_fields__ == IndexParams.__struct_fields__
    assert msgspec.structs.asdict(GalleryParams()) == msgspec.structs.asdict(IndexParams())
    assert Gallery(GalleryParams(exact_max=7)).params.exact_max == 7


@pytest.mark.parametrize("field", ["M", "ef_construction", "ef", "rerank_k", "graph_dim", "shard_size"])
def test_non_positive_params_are_refused(field: str) -> None:
    zero: dict[str, Any] = {field: 0}  # one field by name; the others (ints and a bool) keep their defaults
    with pytest.raises(ValueError, match=field):
        IndexParams(**zero)


def test_set_ef_reaches_the_graph_and_the_params_it_is_built_with() -> None:
    rng = np.random.default_rng(50)
    ids, matrix = make_ids(40), random_unit(rng, 40)
    gallery = Gallery(IndexParams(exact_max=20))
    gallery.add(list(zip(ids[:10], matrix[:10], strict=True)))
    gallery.set_ef(64)  # before the graph exists
    gallery.add(list(zip(ids[10:], matrix[10:], strict=True)))  # past exact_max: the graph is built now
    assert gallery.graph_shards == 1 and gallery._graph is not None
    shard = gallery._graph.shards[0]
    assert shard is not None
    assert gallery.params.ef == 64 and shard.ef == 64
    gallery.set_ef(200)
    assert shard.ef == 200
    with pytest.raises(ValueError):
        gallery.set_ef(0)
