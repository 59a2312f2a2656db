"""PatchCore's algorithmic core: patch features, greedy coresets and nearest-neighbour search.

Depends only on torch, numpy, optionally faiss, and ``fcdd.models`` for the backbones and the
patch features (``fcdd.models.patch_features``, re-exported here).
"""

from fcdd.models.patch_features import DEFAULT_LAYERS, PatchFeatures, channel_pool
from fcdd.neighbours.coreset import coreset_size, covering_radius, greedy_coreset, random_projection
from fcdd.neighbours.search import (
    AUTO_FAISS_MIN_ROWS,
    BACKENDS,
    HAS_FAISS,
    FaissSearch,
    NeighbourSearch,
    TorchSearch,
    make_search,
)

__all__ = [
    "greedy_coreset",
    "covering_radius",
    "coreset_size",
    "random_projection",
    "PatchFeatures",
    "DEFAULT_LAYERS",
    "channel_pool",
    "TorchSearch",
    "FaissSearch",
    "NeighbourSearch",
    "make_search",
    "BACKENDS",
    "HAS_FAISS",
    "AUTO_FAISS_MIN_ROWS",
]
