"""The locality (wiring-cost) prior of a layer whose inputs and outputs sit on 2-D grids.

Both sides of the layer sit row-major on their own most-square grid
(`wiringlab.geometry.grid_shape`; any width, the last row possibly part-filled), each
grid scaled so its longest side spans [0, 1], the two overlaid on the unit square. No
wrap-around: distances are plain Euclidean (or L1) distances in that square. With d
the distance from output unit i to input unit j divided by d_max (the largest such
distance of the layer), the prior is

    P_ij = 1 - (d_ij / d_max)^p            p = 1 linear (default), 0.5 sqrt, 2 quadratic

so P = 1 for units at the same place and P = 0 for the farthest pair. A layer computes
with ``W_eff = P ⊙ W``; with L1 decay on W, transmitting a signal w over distance d
costs |w| / P(d), so long connections are expensive.

Rescaling ("row"): ``P_ij · n_in / Σ_j P_ij``. Every row of the rescaled prior sums to
n_in, the row sum of the all-ones prior of a plain layer, so each output neuron's summed
input gain Σ_j P_ij (the factor by which i.i.d. weights of a given size reach it) is
the same as without the prior; the shape of each row is unchanged.

Pure functions of sizes: no randomness, no state. Geometry and distances come from
`wiringlab.geometry`, the formula from `wiringlab.kernels.kernel_locality`.
"""

from __future__ import annotations

from typing import Literal

import torch

from .geometry import layer_distance
from .kernels import kernel_locality

__all__ = ["RESCALES", "locality_prior", "rescale_rows"]

RESCALES = ("none", "row")
Rescale = Literal["none", "row"]


def rescale_rows(prior: torch.Tensor) -> torch.Tensor:
    """``prior · n_in / prior.sum(1)``: every row sums to n_in (= prior.shape[1]).

    Raises:
        ValueError: a row sums to 0: an output unit every input of which is at d_max (P = 0),
            e.g. the farthest unit of a layer with a single input.
    """
    sums = prior.sum(dim=1, keepdim=True)  # (out, 1)
    if bool((sums <= 0).any()):
        raise ValueError("a row of the prior sums to 0; it cannot be rescaled")
    return prior * (prior.shape[1] / sums)


def locality_prior(n_out: int, n_in: int, p: float = 1.0, rescale: Rescale = "none",
                   metric: str = "euclidean", dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The (n_out, n_in) locality prior ``1 - (d / d_max)^p`` of a layer on 2-D grids.

    Args:
        n_out, n_in: the layer's sizes (each side on its own most-square grid).
        p: the exponent (> 0); 1 linear, 0.5 sqrt, 2 quadratic.
        rescale: "none", or "row" (each row scaled to sum n_in; see the module doc).
        metric: "euclidean" or "l1" distance on the grid.
        dtype, device: of the returned tensor (computed in float64 first).

    Returns:
        P with entries in [0, 1] ("none"), entry (i, j) for output i and input j.

    Raises:
        ValueError: p <= 0, unknown rescale or metric.
    """
    if rescale not in RESCALES:
        raise ValueError(f"unknown rescale {rescale!r}; allowed: {', '.join(RESCALES)}")
    distance = layer_distance(n_out, n_in, layout="grid", metric=metric, dtype=torch.float64)  # (out, in), d/d_max
    prior = kernel_locality(distance, p)
    if rescale == "row":
        prior = rescale_rows(prior)
    return prior.to(device=device, dtype=dtype)
