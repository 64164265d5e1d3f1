"""Drop-in layers. Every layer keeps `weight`/`bias` and exposes `effective_weight()`."""

from .dropout import SeededDropout
from .factory import LAYER_BUILDERS, LayerSite, make_linear
from .locality import LocalityLinear
from .sparse import SparseLinear
from .sparse_csr import CSRSparseLinear
from .spatial import SpatialLinear

__all__ = ["SeededDropout", "SparseLinear", "CSRSparseLinear", "SpatialLinear", "LocalityLinear", "LayerSite", "make_linear", "LAYER_BUILDERS",
           "effective_weight"]


def effective_weight(layer):
    """The weight a layer actually computes with: `layer.effective_weight()` if it has
    one (prior and sparse layers), else `layer.weight` (plain torch layers)."""
    method = getattr(layer, "effective_weight", None)
    return method() if callable(method) else layer.weight
