"""Within-network weight-space symmetry: do hidden units' incoming weights align?

Hidden units i and j of one layer sit at an overlap (a permutation point) when their
incoming weight vectors coincide, cos(w_i, w_j) = 1 (or -1: for odd activations such
as tanh, w_i = -w_j is the same kind of singularity). These functions take a layer's
effective weight — (out, in) for linear layers, (out, in, kh, kw) for convolutions,
whose output channels' filters are flattened — and return the pairwise cosines, their
histogram, the pairs' cosine trajectories over snapshots, and overlap counts.

Pure functions of tensors: no I/O, no RNG. Evidence: `tests/analysis/test_symmetry.py`
checks the pairwise cosines against a slow loop and the overlap of duplicated units.

Convention: a zero vector (a dead or fully pruned unit) has no direction; its cosine
with every other unit is reported as 0, as `torch.nn.functional.cosine_similarity`
does, so such units never count as overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = [
    "incoming_vectors", "cosine_matrix", "pair_indices", "pairwise_cosines", "cosine_histogram",
    "cosine_trajectories", "OverlapStats", "overlap_stats",
]


def incoming_vectors(weight: torch.Tensor) -> torch.Tensor:
    """One row per unit: (out, in) stays, (out, in, *kernel) becomes (out, in·prod(kernel)).

    Raises:
        ValueError: `weight` has fewer than 2 dimensions (a bias, not a weight).
    """
    if weight.dim() < 2:
        raise ValueError(f"expected a weight of shape (out, in, ...), got shape {tuple(weight.shape)}")
    return weight.detach().flatten(1)  # (out, fan_in)


def cosine_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(out, out) float64 matrix of cosines between the units' incoming weight vectors.

    The diagonal is 1 for non-zero units; rows of zero units are 0 (see module doc).
    """
    vectors = incoming_vectors(weight).double()
    norms = vectors.norm(dim=1)
    unit = vectors / torch.where(norms > 0, norms, torch.ones_like(norms))[:, None]  # zero rows stay 0
    return (unit @ unit.T).clamp_(-1.0, 1.0)  # (out, out)


def pair_indices(n_units: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices (i < j) of every unordered pair of `n_units` units, in
    row-major order; `pairwise_cosines` returns its values in this order."""
    rows, cols = torch.triu_indices(n_units, n_units, offset=1)
    return rows, cols


def pairwise_cosines(weight: torch.Tensor) -> torch.Tensor:
    """Cosines of every unordered pair of units (i < j), a float64 vector of length
    out·(out-1)/2 in `pair_indices` order."""
    rows, cols = pair_indices(weight.shape[0])
    return cosine_matrix(weight)[rows, cols]  # (pairs,)


def cosine_histogram(cosines: torch.Tensor, bins: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts of `cosines` in `bins` equal bins over [-1, 1]; returns (counts, edges)."""
    edges = torch.linspace(-1.0, 1.0, bins + 1, dtype=torch.float64)
    counts = torch.histc(cosines.double(), bins=bins, min=-1.0, max=1.0)
    return counts.long(), edges


def cosine_trajectories(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """(snapshots, pairs): each pair's cosine at each snapshot of one layer, so that
    row t against row 0 is the cos(t)-vs-cos(0) picture.

    Raises:
        ValueError: the snapshots do not all have the same number of units.
    """
    sizes = {w.shape[0] for w in weights}
    if len(sizes) > 1:
        raise ValueError(f"snapshots of one layer must have the same number of units, got {sorted(sizes)}")
    return torch.stack([pairwise_cosines(w) for w in weights])  # (T, pairs)


@dataclass(frozen=True)
class OverlapStats:
    """How close a layer's units are to overlapping."""

    n_pairs: int
    n_overlaps: int  # pairs with |cos| > threshold
    share: float  # n_overlaps / n_pairs (NaN when there are no pairs)
    max_abs_cos: float  # largest |cos| over pairs: the closest pair (NaN without pairs)
    mean_abs_cos: float  # mean |cos| over pairs (NaN without pairs)
    threshold: float


DUPLICATE_TOL = 1e-12  # float64 cosines of two parallel vectors miss 1 by a few ulps


def overlap_stats(cosines: torch.Tensor, threshold: float = 0.95) -> OverlapStats:
    """Count the pairs whose |cos| exceeds `threshold` (strictly), and the largest overlap.

    Args:
        cosines: pairwise cosines of one layer (`pairwise_cosines`).
        threshold: in (0, 1]; the issue's default 0.95. At 1 a pair overlaps when its
            |cos| is 1 up to rounding (>= 1 - DUPLICATE_TOL): duplicates reach
            0.9999999999999998, and no cosine exceeds 1.

    Raises:
        ValueError: threshold outside (0, 1].
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"overlap threshold must be in (0, 1], got {threshold}")
    magnitude = cosines.double().abs()
    n = magnitude.numel()
    if n == 0:
        nan = float("nan")
        return OverlapStats(0, 0, nan, nan, nan, threshold)
    overlapping = magnitude >= 1.0 - DUPLICATE_TOL if threshold == 1.0 else magnitude > threshold
    count = int(overlapping.sum())
    return OverlapStats(n, count, count / n, float(magnitude.max()), float(magnitude.mean()), threshold)
