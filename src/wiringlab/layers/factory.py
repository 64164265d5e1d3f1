"""One place that turns a layer config into a linear layer.

Models never construct `nn.Linear` directly: they call `make_linear`, so a prior
layer (spatial kernel, sparse mask, locality prior) replaces a plain one by config
alone. Each layer type maps to one builder in `LAYER_BUILDERS`; a builder receives a
`LayerSite` that says where in the model the layer sits (its sizes, the spatial shape
of its input when known, its index, whether it is the output layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .locality import build_locality_linear
from .sparse import build_sparse_linear
from .spatial_build import build_spatial_linear

__all__ = ["LayerSite", "make_linear", "LAYER_BUILDERS"]


@dataclass(frozen=True)
class LayerSite:
    """Where a linear layer sits in a model.

    Attributes:
        in_features, out_features: the layer's sizes.
        index: position among the model's linear layers (0 = first).
        is_output: True for the classifier layer.
        in_shape: the spatial shape of the input, e.g. (1, 28, 28) for pixels, when
            the inputs have one; None for hidden activations (no inherent layout).
    """

    in_features: int
    out_features: int
    index: int
    is_output: bool = False
    in_shape: tuple[int, ...] | None = None


def _build_linear(config, site: LayerSite, device, dtype) -> nn.Module:
    return nn.Linear(site.in_features, site.out_features, device=device, dtype=dtype)


LAYER_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "linear": _build_linear,
    "sparse": build_sparse_linear,
    "spatial": build_spatial_linear,
    "locality": build_locality_linear,
}


def make_linear(
    config,
    site: LayerSite,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Build the linear layer that `config` describes at `site`.

    Args:
        config: a layer config with a `type` field (see `wiringlab.experiment.config`).
        site: where the layer sits.
        device, dtype: passed to the layer constructor.

    Returns:
        An `nn.Linear` or a subclass of it.

    Raises:
        ValueError: the layer type has no builder.
    """
    builder = LAYER_BUILDERS.get(config.type)
    if builder is None:
        raise ValueError(f"unknown layer type {config.type!r}; known: {sorted(LAYER_BUILDERS)}")
    return builder(config, site, device, dtype)
