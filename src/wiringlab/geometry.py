"""Neuron positions and the distances between them, for spatial priors.

A spatial prior needs a place for every input and output unit of a layer. Two layouts:

- **line**: unit ``i`` of ``n`` sits at ``i / n`` (the reference write-up's
  ``d = |i/n_out - j/n_in|`` normalised index distance), whatever the input's shape.
- **grid**: image inputs sit at their pixel coordinates (every channel of a pixel at
  the same place); units without a spatial shape (hidden units) sit row-major on the
  most square grid that holds them (`grid_shape`), the last row possibly part-filled.
  Coordinates are scaled by the longest side so positions lie in [0, 1]² and the
  grid's aspect ratio is kept. An input's shorter side is centred in [0, 1] (a signal,
  1 × L, lies on the row y = 0.5).

Pitfall: units on a grid with fewer rows than columns (128 → 11 × 12, 84 → 9 × 10, 2 →
1 × 2; not the square 256 or 64) are top-aligned, covering y ∈ [0, (rows−1)/(cols−1)], not
centred. With image inputs the top pixel rows then lie nearer the outputs than the bottom
ones: for 128 hidden units on a 28 × 28 image, the exponential kernel's mass per pixel row is
44.8 at the top and 38.5 at the bottom (16% more); left and right are symmetric. Centring
them would change the locality recipe's kernels (hidden [120, 84]) and its measured
numbers, so it is left as is and said here; the default `line` layout is not affected.

Distances are Euclidean (default) or L1, computed exactly (no ``cdist`` matmul
shortcut, so a unit's distance to its own position is exactly 0), in float64, and by
default divided by ``d_max``, the largest distance between any output and any input
position of the layer, so that normalised distances lie in [0, 1] with 1 reached.

Pure functions of sizes and shapes: no randomness, no state.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch

__all__ = [
    "grid_shape", "line_positions", "grid_positions", "auto_grid_positions", "input_positions",
    "layer_positions", "pairwise_distance", "normalize_distance", "layer_distance",
]

Metric = Literal["euclidean", "l1"]
Layout = Literal["line", "grid"]


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of the most square grid that holds ``n`` units: ``cols = ceil(sqrt(n))``,
    ``rows = ceil(n / cols)``. 256 → (16, 16); 40 → (6, 7); 10 → (3, 4).

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"a grid needs at least one unit, got n={n}")
    cols = math.isqrt(n - 1) + 1  # ceil(sqrt(n)) without float error
    return math.ceil(n / cols), cols


def line_positions(n: int) -> torch.Tensor:
    """Positions ``i / n`` of ``n`` units on a line, shape (n, 1), in [0, 1)."""
    return (torch.arange(n, dtype=torch.float64) / n).unsqueeze(1)


def grid_positions(rows: int, cols: int, count: int | None = None) -> torch.Tensor:
    """Row-major positions (y, x) of the first ``count`` cells of a rows × cols grid, shape
    (count, 2). Cell (r, c) sits at (r, c) / (max(rows, cols) - 1): the longest side spans
    [0, 1] and the aspect ratio is kept. A single cell sits at (0, 0)."""
    count = rows * cols if count is None else count
    if count > rows * cols:
        raise ValueError(f"{count} units do not fit a {rows}x{cols} grid")
    index = torch.arange(count)
    yx = torch.stack([index // cols, index % cols], dim=1).to(torch.float64)  # (count, 2)
    return yx / max(max(rows, cols) - 1, 1)


def auto_grid_positions(n: int) -> torch.Tensor:
    """Positions of ``n`` units without a shape of their own, on `grid_shape(n)`; (n, 2)."""
    return grid_positions(*grid_shape(n), count=n)


def input_positions(in_shape: Sequence[int]) -> torch.Tensor:
    """Grid positions of a flattened input of shape ``(C, H, W)``, ``(C, L)`` or ``(L,)``, in
    the flatten order (channel-major): every channel of a pixel gets the pixel's place.
    One spatial dimension is a 1 × L grid; the shorter side is centred in [0, 1] (a
    signal's row at y = 0.5). Returns (prod(in_shape), 2)."""
    shape = tuple(in_shape)
    if len(shape) == 1:
        channels, spatial = 1, (1, shape[0])
    elif len(shape) == 2:
        channels, spatial = shape[0], (1, shape[1])
    else:
        channels, spatial = math.prod(shape[:-2]), shape[-2:]
    pixels = grid_positions(*spatial)  # (H*W, 2), the longer side spanning [0, 1]
    longest = max(spatial) - 1
    if longest > 0:  # centre the shorter side: a top-aligned signal would sit nearer the top outputs
        extent = torch.tensor([(spatial[0] - 1) / longest, (spatial[1] - 1) / longest], dtype=torch.float64)
        pixels = pixels + (1 - extent) / 2
    return pixels.repeat(channels, 1)  # (C*H*W, 2)


def layer_positions(n_out: int, n_in: int, layout: Layout = "line",
                    in_shape: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of a layer's outputs and inputs: ((n_out, D), (n_in, D)).

    Args:
        n_out, n_in: the layer's sizes.
        layout: "line" (index positions i/n for both sides) or "grid" (inputs at pixel
            coordinates when ``in_shape`` is given, else on the auto grid; outputs on the
            auto grid).
        in_shape: spatial shape of the input, e.g. (1, 28, 28); must hold ``n_in`` values.

    Raises:
        ValueError: unknown layout, or ``in_shape`` does not match ``n_in``.
    """
    if layout == "line":
        return line_positions(n_out), line_positions(n_in)
    if layout != "grid":
        raise ValueError(f"unknown layout {layout!r}; allowed: line, grid")
    if in_shape is not None and math.prod(in_shape) != n_in:
        raise ValueError(f"in_shape {tuple(in_shape)} holds {math.prod(in_shape)} values, the layer has {n_in} inputs")
    inputs = input_positions(in_shape) if in_shape is not None else auto_grid_positions(n_in)
    return auto_grid_positions(n_out), inputs


def pairwise_distance(a: torch.Tensor, b: torch.Tensor, metric: Metric = "euclidean") -> torch.Tensor:
    """Distances between every row of ``a`` (n, D) and every row of ``b`` (m, D): (n, m).

    Computed from explicit differences, so equal positions give exactly 0.

    Raises:
        ValueError: unknown metric or mismatched dimensions.
    """
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"positions of different dimension: {a.shape[-1]} and {b.shape[-1]}")
    if metric not in ("euclidean", "l1"):
        raise ValueError(f"unknown metric {metric!r}; allowed: euclidean, l1")
    diff = (a[:, None, :] - b[None, :, :]).abs_()  # (n, m, D)
    if metric == "l1":
        return diff.sum(-1)
    if not diff.is_floating_point():  # integer positions: sqrt promotes to float
        return diff.square().sum(-1).sqrt()
    # in place: a 10k x 10k layer's differences are D x 800 MB in float64
    return diff.square_().sum(-1).sqrt_()


def normalize_distance(distance: torch.Tensor) -> torch.Tensor:
    """``distance / d_max`` with ``d_max = distance.max()``, so values lie in [0, 1] and the
    largest is 1. All-zero distances (a 1 × 1 layer) are returned unchanged."""
    d_max = distance.max()
    return distance / d_max if d_max > 0 else distance.clone()


def _normalize_distance_(distance: torch.Tensor) -> torch.Tensor:
    """`normalize_distance` in place, for a tensor nothing else holds."""
    d_max = distance.max()
    return distance.div_(d_max) if d_max > 0 else distance


def layer_distance(n_out: int, n_in: int, layout: Layout = "line", metric: Metric = "euclidean",
                   in_shape: Sequence[int] | None = None, normalize: bool = True,
                   dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The (n_out, n_in) distance matrix of a layer, normalised by its ``d_max`` unless
    ``normalize=False``. On a line the metric makes no difference (one dimension).

    Returns:
        A tensor of ``dtype`` on ``device``; entry (i, j) is the distance from output unit
        i to input unit j.
    """
    out_pos, in_pos = layer_positions(n_out, n_in, layout, in_shape)
    distance = pairwise_distance(out_pos, in_pos, metric)
    if normalize:
        distance = _normalize_distance_(distance)
    return distance.to(device=device, dtype=dtype)
