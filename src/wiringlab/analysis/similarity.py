"""Similarity of two networks that respects the permutation symmetry of hidden units.

Two networks trained from different seeds can compute the same function with their
hidden units in a different order; the raw cosine of their flattened weights then
says little. This file gives, for two chains of weights (the effective weights of
consecutive layers, W_0 … W_L, where layer l+1 consumes layer l's units):

- `flat_cosine`: the raw cosine of the flattened weights (what the spatial-prior study
  measured);
- `match_weights`: weight matching (Ainsworth et al., Git Re-Basin), layer by layer: the
  permutation P_l of B's units of layer l maximising Σ_i <a_i, (P_l B_l P_{l-1}ᵀ)_i>
  (incoming weights, plus per-unit extras such as bias and BatchNorm parameters),
  found with the Hungarian algorithm and propagated to the inputs of layer l+1;
- `weight_similarity`: raw and aligned cosines, per layer and over all layers (aligned by
  `match_weights`, or by `weight_matching.rebasin_weights`, full Git Re-Basin);
- `linear_cka`: linear centred kernel alignment of two representations of the same
  inputs (Kornblith et al. 2019), numerically guarded.

Pure functions of tensors (no I/O, no RNG). Evidence: `tests/analysis/test_similarity.py`
(planted permutation recovered exactly, a permuted copy aligns to cosine 1, CKA
invariances).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["flat_cosine", "permute_inputs", "permute_chain", "match_weights", "WeightSimilarity",
           "weight_similarity", "linear_cka"]


def flat_cosine(a: Sequence[torch.Tensor] | torch.Tensor, b: Sequence[torch.Tensor] | torch.Tensor) -> float:
    """Cosine of the concatenated, flattened tensors of `a` and `b` (float64).

    Returns NaN when either side is all zeros (no direction).

    Raises:
        ValueError: the tensors' shapes differ.
    """
    a = [a] if isinstance(a, torch.Tensor) else list(a)
    b = [b] if isinstance(b, torch.Tensor) else list(b)
    if [tuple(t.shape) for t in a] != [tuple(t.shape) for t in b]:
        raise ValueError(f"shapes differ: {[tuple(t.shape) for t in a]} vs {[tuple(t.shape) for t in b]}")
    x = torch.cat([t.detach().double().flatten() for t in a])
    y = torch.cat([t.detach().double().flatten() for t in b])
    denominator = float(x.norm() * y.norm())
    return min(1.0, max(-1.0, float(x @ y) / denominator)) if denominator > 0 else math.nan


def permute_inputs(weight: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """`weight` with its inputs (dim 1) reordered by `perm` of the previous layer's units.

    When dim 1 is a multiple k·len(perm) (a linear layer reading a flattened C×H×W
    conv output), each unit owns a block of k consecutive inputs and blocks move.

    Raises:
        ValueError: dim 1 is not a multiple of len(perm).
    """
    n, fan_in = len(perm), weight.shape[1]
    if fan_in == n:
        return weight.index_select(1, perm)
    if n == 0 or fan_in % n:
        raise ValueError(f"cannot permute {fan_in} inputs by a permutation of {n} units")
    blocks = weight.reshape(weight.shape[0], n, fan_in // n, *weight.shape[2:])  # (out, units, k, ...)
    return blocks.index_select(1, perm).reshape(weight.shape)


def permute_chain(weights: Sequence[torch.Tensor], perms: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
    """Apply unit permutations to a chain: layer l's rows and layer l+1's inputs by perms[l].

    Args:
        weights: W_0 … W_L, each (out, in, ...).
        perms: one per hidden layer (len(weights) - 1); None = identity. `perms[l][i]`
            is the unit of the original network that becomes unit i.

    Returns:
        The permuted weights (new tensors; the inputs are not modified). The function
        the chain computes is unchanged.
    """
    if len(perms) != len(weights) - 1:
        raise ValueError(f"need one permutation per hidden layer ({len(weights) - 1}), got {len(perms)}")
    out = [w.detach() for w in weights]
    for index, perm in enumerate(perms):
        if perm is not None:
            out[index] = out[index].index_select(0, perm)
            out[index + 1] = permute_inputs(out[index + 1], perm)
    return out


def _features(weight: torch.Tensor, extras: torch.Tensor | None) -> torch.Tensor:
    rows = weight.detach().double().flatten(1)  # (out, fan_in)
    if extras is None:
        return rows
    return torch.cat([rows, extras.detach().double().reshape(weight.shape[0], -1)], dim=1)  # (out, fan_in + k)


def match_weights(weights_a: Sequence[torch.Tensor], weights_b: Sequence[torch.Tensor],
                  extras_a: Sequence[torch.Tensor | None] | None = None,
                  extras_b: Sequence[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
    """Permutations of B's hidden units that best align B to A, one layer at a time.

    For each hidden layer l in forward order: permute B_l's inputs by the permutation
    already chosen for layer l-1, score every (unit of A, unit of B) pair by the inner
    product of their incoming weights (plus per-unit extras), and solve the assignment
    with `scipy.optimize.linear_sum_assignment(maximize=True)`.

    Args:
        weights_a, weights_b: chains W_0 … W_L of the same shapes (the last layer, the
            classifier, has fixed output units and is only permuted on its inputs).
        extras_a, extras_b: per hidden layer, an (out, k) tensor of other per-unit
            parameters (bias, BatchNorm weight/bias), or None.

    Returns:
        One LongTensor per hidden layer; `permute_chain(weights_b, perms)` is B aligned to A.

    Pitfalls:
        * Greedy forward matching is exact when B is a permuted copy of A (a planted
          permutation is recovered) up to units that their incoming weights and extras
          cannot tell apart: units with identical incoming vectors (e.g. dead units whose
          incoming weights were all pruned, without a distinguishing bias) are matched in
          an arbitrary order, so the next layer's aligned cosine can fall below 1 even
          for a copy.
        * For independently trained networks it is a local heuristic; aligned cosines
          are lower bounds of the optimum. It is the forward half of Git Re-Basin's
          weight matching (Ainsworth et al. 2022, Algorithm 1), in one pass: that
          algorithm also scores each unit's outgoing weights (W_{l+1}ᵀ P_{l+1} W'_{l+1})
          and repeats coordinate descent until no permutation changes. Neither finds
          the optimum; on a planted permutation with noise the full algorithm recovers
          more units, on independent random networks either may score higher.

    Raises:
        ValueError: the chains' shapes differ, or a weight holds NaN or inf (a
            diverged run: no assignment is defined).
    """
    if [tuple(w.shape) for w in weights_a] != [tuple(w.shape) for w in weights_b]:
        raise ValueError(f"the two chains differ in shape: {[tuple(w.shape) for w in weights_a]} "
                         f"vs {[tuple(w.shape) for w in weights_b]}")
    if not all(bool(torch.isfinite(w).all()) for w in (*weights_a, *weights_b)):
        raise ValueError("weights hold NaN or inf (a diverged run?): no unit matching is defined for them")
    hidden = len(weights_a) - 1
    extras_a = list(extras_a) if extras_a is not None else [None] * hidden
    extras_b = list(extras_b) if extras_b is not None else [None] * hidden
    perms: list[torch.Tensor] = []
    for index in range(hidden):
        b = weights_b[index] if index == 0 else permute_inputs(weights_b[index], perms[-1])
        score = _features(weights_a[index], extras_a[index]) @ _features(b, extras_b[index]).T  # (out, out)
        _, cols = linear_sum_assignment(score.cpu().numpy(), maximize=True)
        perms.append(torch.as_tensor(cols, dtype=torch.long, device=weights_b[index].device))
    return perms


@dataclass(frozen=True)
class WeightSimilarity:
    """Raw and aligned cosines of two chains, per layer and over all layers."""

    raw: list[float]  # per layer, in chain order
    aligned: list[float]
    raw_all: float  # all layers flattened together
    aligned_all: float
    permutations: list[torch.Tensor]  # B's unit order per hidden layer


def weight_similarity(weights_a, weights_b, extras_a=None, extras_b=None, *, match=None) -> WeightSimilarity:
    """Raw cosines, then the same after `match` aligned B to A: `match_weights` by default (see
    there), or any function of the same arguments and result (`weight_matching.rebasin_weights`)."""
    perms = (match or match_weights)(weights_a, weights_b, extras_a, extras_b)
    aligned_b = permute_chain(weights_b, perms)
    return WeightSimilarity(
        raw=[flat_cosine(a, b) for a, b in zip(weights_a, weights_b)],
        aligned=[flat_cosine(a, b) for a, b in zip(weights_a, aligned_b)],
        raw_all=flat_cosine(weights_a, weights_b),
        aligned_all=flat_cosine(weights_a, aligned_b),
        permutations=perms,
    )


def _centred_features(x: torch.Tensor, rtol: float) -> torch.Tensor:
    x = x.detach().double().flatten(1)  # (n, features)
    centred = x - x.mean(dim=0, keepdim=True)
    scale = x.abs().amax(dim=0) * math.sqrt(x.shape[0])
    constant = centred.norm(dim=0) <= rtol * scale  # constant up to rounding (also all-zero columns)
    centred[:, constant] = 0.0
    return centred


def linear_cka(x: torch.Tensor, y: torch.Tensor, *, rtol: float = 1e-10) -> float:
    """Linear CKA of two representations of the same n inputs: rows are inputs.

    CKA(X, Y) = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on column-centred X (n, p), Y (n, q), in
    float64. It is 1 for identical representations and invariant to orthogonal
    transforms and isotropic scaling of either side (not to arbitrary linear maps).

    Guards (what it returns where peers return NaN):
        - features that are constant over the n inputs (to relative tolerance `rtol`,
          so rounding in the mean does not count as variance) are dropped: they carry
          no information about the inputs;
        - if either side has no varying feature left (n < 2, a dead layer), the
          representations share no variance and the result is 0.0;
        - a batch of 2 is finite but uninformative: both centred Gram matrices are
          multiples of [[1, -1], [-1, 1]], so CKA is 1.0 for any two representations
          (use hundreds of inputs; the report uses 1000 test samples).

    Pitfall: this is the biased (plain HSIC) estimator, whose value for unrelated
    representations grows with features per input: independent Gaussian features give
    0.06 at n = 1000 inputs and p = 64 features, 0.20 at p = 256, 0.33 at p = 500 and
    0.57 at n = 200, p = 256. Compare a value with the same architecture's chance level
    (the report's "CKA at init"), not with 0.

    Returns:
        A float in [0, 1]; NaN when an input holds NaN or inf.

    Raises:
        ValueError: x and y have different numbers of rows.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"representations of the same inputs needed: {x.shape[0]} vs {y.shape[0]} rows")
    xc, yc = _centred_features(x, rtol), _centred_features(y, rtol)
    if xc.shape[0] < xc.shape[1] or yc.shape[0] < yc.shape[1]:  # fewer inputs than features: n×n Grams
        kx, ky = xc @ xc.T, yc @ yc.T  # (n, n)
        cross, norm_x, norm_y = (kx * ky).sum(), kx.norm(), ky.norm()
    else:
        cross = (yc.T @ xc).square().sum()
        norm_x, norm_y = (xc.T @ xc).norm(), (yc.T @ yc).norm()
    if norm_x == 0 or norm_y == 0:
        return 0.0
    return float((cross / (norm_x * norm_y)).clamp(0.0, 1.0))
