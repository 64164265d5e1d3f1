"""Spatial clustering of a layer's activations on its 2-D grid (the locality-prior analysis).

Definitions, used by every function here:

- **Grid.** The n units of a layer sit row-major on ``geometry.grid_shape(n)`` = (rows,
  cols), the grid the locality prior places them on: unit u at cell (u // cols, u % cols).
  Positions are in cells (horizontal and vertical neighbours are 1 apart).
- **Mass.** A map a ∈ Rⁿ becomes a distribution over cells: ``m_u = max(a_u, 0) / Σ_v
  max(a_v, 0)`` ("positive", the default: where the layer is active; after a ReLU these are
  the activations themselves), or ``m_u = |a_u| / Σ_v |a_v|`` ("abs").
- **Spatial variance.** ``V(a) = Σ_u m_u ‖pos_u − c‖²`` with centroid ``c = Σ_u m_u pos_u``,
  in cells². V = 0 iff all mass sits in one cell; a uniform map on a k × k grid has
  V = (k² − 1)/6; lower V = more clustered. A map without mass (every a_u ≤ 0) has V = NaN.
- **Class-mean map** of class c: the mean activation vector over the images of class c.
  **Centered**: minus the mean over classes of the class-mean maps, so its positive part is
  where class c is more active than the average class.
- **Per-image variance**: V of each image's own map. `compare_over_images` tests these
  between a treatment and a control network (Welch, over all images and per class);
  `welch_t_test` on per-network means tests across seeds.

Pure functions of tensors and numbers (`module_io` runs a model's forward, nothing else):
no I/O, no randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import stats as sps
from torch import nn

from ..geometry import grid_shape
from ..models import run_with_hooks

__all__ = [
    "grid_cells", "to_grid", "class_mean_maps", "center_over_classes", "spatial_mass", "spatial_variance",
    "class_variances", "WelchResult", "welch_t_test", "ClusteringComparison", "compare_over_images", "module_io",
]

Mass = Literal["positive", "abs"]


def grid_cells(n: int) -> torch.Tensor:
    """Cell coordinates (row, col) of ``n`` units row-major on ``grid_shape(n)``: (n, 2) float64."""
    _, cols = grid_shape(n)
    index = torch.arange(n)
    return torch.stack([index // cols, index % cols], dim=1).to(torch.float64)


def to_grid(values: torch.Tensor) -> torch.Tensor:
    """``values`` (..., n) laid out on their grid: (..., rows, cols), empty cells NaN (for figures)."""
    n = values.shape[-1]
    rows, cols = grid_shape(n)
    padded = torch.full((*values.shape[:-1], rows * cols), math.nan, dtype=torch.float64)
    padded[..., :n] = values.to(torch.float64)
    return padded.reshape(*values.shape[:-1], rows, cols)


def class_mean_maps(activations: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean activation map of each class: (C, n) float64; NaN rows for classes without images.

    Args:
        activations: (N, n), one map per image.
        labels: (N,) int class of each image, in [0, num_classes).
    """
    acts = activations.detach().to(torch.float64).cpu()
    labels = labels.detach().cpu().long()
    sums = torch.zeros(num_classes, acts.shape[1], dtype=torch.float64).index_add_(0, labels, acts)  # (C, n)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)  # (C,)
    return sums / counts[:, None]  # 0/0 = NaN for an empty class


def center_over_classes(means: torch.Tensor) -> torch.Tensor:
    """Class-mean maps minus their mean over classes (classes with NaN rows left out of the mean)."""
    return means - means.nanmean(dim=0, keepdim=True)


def spatial_mass(maps: torch.Tensor, mass: Mass = "positive") -> torch.Tensor:
    """Each map (..., n) as a distribution over its cells (see the module doc); rows without
    mass are NaN.

    Raises:
        ValueError: unknown mass.
    """
    if mass == "positive":
        weights = maps.to(torch.float64).clamp_min(0.0)
    elif mass == "abs":
        weights = maps.to(torch.float64).abs()
    else:
        raise ValueError(f"unknown mass {mass!r}; allowed: positive, abs")
    total = weights.sum(dim=-1, keepdim=True)
    return weights / torch.where(total > 0, total, torch.full_like(total, math.nan))


def spatial_variance(maps: torch.Tensor, positions: torch.Tensor | None = None,
                     mass: Mass = "positive") -> torch.Tensor:
    """``V = Σ_u m_u ‖pos_u − c‖²`` of each map, c the mass centroid (module doc): (...) float64.

    Args:
        maps: (..., n) activation maps.
        positions: (n, D) positions of the units; default `grid_cells(n)` (cells).
        mass: "positive" (default) or "abs".

    Returns:
        The variance of each map, NaN for a map without mass.
    """
    positions = grid_cells(maps.shape[-1]) if positions is None else positions.to(torch.float64)
    m = spatial_mass(maps.detach().cpu(), mass)  # (..., n)
    centroid = m @ positions  # (..., D)
    squared = (positions - centroid.unsqueeze(-2)).square().sum(-1)  # (..., n)
    return (m * squared).sum(-1)


def class_variances(activations: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                    centered: bool = False, positions: torch.Tensor | None = None,
                    mass: Mass = "positive") -> torch.Tensor:
    """Spatial variance of each class-mean map (raw, or ``centered`` over classes): (C,).
    The overall value is their mean over classes (``.nanmean()``), which does not depend on
    how classes are numbered."""
    means = class_mean_maps(activations, labels, num_classes)
    if centered:
        means = center_over_classes(means)
    return spatial_variance(means, positions, mass)


@dataclass(frozen=True)
class WelchResult:
    """Welch's two-sample t-test of a against b (finite values only)."""

    statistic: float  # t; > 0 when mean(a) > mean(b); NaN when undefined
    p: float  # two-sided
    df: float  # Welch–Satterthwaite degrees of freedom
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int

    @property
    def difference(self) -> float:
        return self.mean_a - self.mean_b


def welch_t_test(a, b) -> WelchResult:
    """Welch's t-test (unequal variances), computed from its formula:
    ``t = (x̄ − ȳ) / √(s_x²/n_x + s_y²/n_y)``, df by Welch–Satterthwaite, p two-sided from the
    t distribution. Non-finite values are dropped first. t, p and df are NaN when either side
    has fewer than 2 values or both have zero variance."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    mean_x = float(x.mean()) if len(x) else math.nan
    mean_y = float(y.mean()) if len(y) else math.nan
    nan = WelchResult(math.nan, math.nan, math.nan, mean_x, mean_y, len(x), len(y))
    if len(x) < 2 or len(y) < 2:
        return nan
    # a constant sample's variance is exactly 0 (numpy's mean of [0.1] * 3 is not 0.1, and its
    # var would be 3e-34: a t of 1e15 between two constant samples)
    vx, vy = (float(v.var(ddof=1)) / len(v) if np.ptp(v) > 0 else 0.0 for v in (x, y))
    if vx + vy == 0:
        return nan
    t = (mean_x - mean_y) / math.sqrt(vx + vy)
    share_x, share_y = vx / (vx + vy), vy / (vx + vy)  # as shares: squares of tiny variances do not underflow
    df = 1.0 / (share_x**2 / (len(x) - 1) + share_y**2 / (len(y) - 1))
    p = float(2.0 * sps.t.sf(abs(t), df))
    return WelchResult(float(t), p, float(df), mean_x, mean_y, len(x), len(y))


@dataclass(frozen=True)
class ClusteringComparison:
    """Treatment vs control per-image spatial variance, over all images and per class."""

    overall: WelchResult
    per_class: tuple[WelchResult, ...]
    driver: int | None  # the class with the largest |t| of the overall difference's sign; None if none


def _driver(overall: WelchResult, per_class) -> int | None:
    if not math.isfinite(overall.statistic) or overall.statistic == 0:
        return None
    sign = math.copysign(1.0, overall.statistic)
    scores = [sign * r.statistic if math.isfinite(r.statistic) else -math.inf for r in per_class]
    best = max(range(len(scores)), key=scores.__getitem__, default=None)
    return best if best is not None and scores[best] > 0 else None


def compare_over_images(variance_a: torch.Tensor, labels_a: torch.Tensor, variance_b: torch.Tensor,
                        labels_b: torch.Tensor, num_classes: int) -> ClusteringComparison:
    """Welch tests of per-image spatial variance, a (treatment) vs b (control).

    Args:
        variance_a, variance_b: (N_a,), (N_b,) per-image variances (`spatial_variance` of each
            image's map); NaN entries (maps without mass) are dropped.
        labels_a, labels_b: their classes.
        num_classes: C.

    Returns:
        The test over all images, one per class, and the class that drives the difference:
        among classes whose t has the sign of the overall t, the one with the largest |t|.
    """
    va, vb = variance_a.detach().cpu().numpy(), variance_b.detach().cpu().numpy()
    la, lb = labels_a.detach().cpu().numpy(), labels_b.detach().cpu().numpy()
    overall = welch_t_test(va, vb)
    per_class = tuple(welch_t_test(va[la == c], vb[lb == c]) for c in range(num_classes))
    return ClusteringComparison(overall, per_class, _driver(overall, per_class))


@torch.no_grad()
def module_io(model: nn.Module, module: nn.Module, x: torch.Tensor,
              batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``module`` (a part of ``model``) receives and returns when ``model`` runs on ``x``
    in eval mode (BatchNorm uses its running statistics), batch by batch.

    Returns:
        (inputs (N, ...), outputs (N, ...)) of ``module``, on the CPU; the model's training
        mode is restored afterwards.
    """
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    run_with_hooks(model, x, batch_size, [(module, lambda _m, args, out: seen.append((args[0].cpu(), out.cpu())))])
    return torch.cat([s[0] for s in seen]), torch.cat([s[1] for s in seen])
