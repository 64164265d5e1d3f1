"""Git Re-Basin weight matching in full: coordinate descent over every hidden layer's permutation.

`similarity.match_weights` aligns B to A in one forward pass, scoring each unit by its
incoming weights only. Weight matching as Ainsworth et al. (2022, Algorithm 1) state it
maximises the whole chain's inner product

    J(P) = Σ_l <A_l, P_l B_l P_{l-1}ᵀ>   (P_{-1} = P_L = identity; per-unit extras added)

by solving one layer's permutation at a time with the others fixed: a unit is scored by its
incoming weights (inputs already permuted by P_{l-1}) *and* its outgoing ones (the next
layer's inputs, rows already permuted by P_{l+1}). Each such step is an exact linear
assignment, so J never decreases; starting from the forward pass, the result has at least
its J. Without extras J is the aligned flat inner product, so the aligned cosine over all
layers can only rise; with extras (bias, BatchNorm) a step may gain on them and lose on the
weights, and the weights' aligned cosine can end a little below the forward pass's.
Evidence: `tests/analysis/test_weight_matching.py` (planted permutations with noise; J and
the aligned cosine against the forward pass; coordinate-wise optimality by brute force;
invariance to a shuffle of B).

Pure function of tensors: no I/O, no RNG (layers are visited in forward order each sweep,
where the paper draws a random order).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from scipy.optimize import linear_sum_assignment

from .similarity import _features, match_weights, permute_inputs

__all__ = ["rebasin_weights", "matching_objective"]

log = logging.getLogger(__name__)


def _outgoing(weight: torch.Tensor, units: int) -> torch.Tensor:
    """Each input unit's outgoing weights as a row: (units, everything else). A linear layer
    reading a flattened map gives each unit a block of k consecutive inputs: after the
    transpose those are k consecutive rows, which the reshape joins into the unit's row."""
    return weight.detach().double().transpose(0, 1).reshape(units, -1)  # (units, out · k · ...)


def _layer_score(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], extras_a, extras_b,
                 perms: list[torch.Tensor], index: int) -> torch.Tensor:
    """(units of A, units of B) score of layer `index`'s permutation, the others fixed."""
    incoming = b[index] if index == 0 else permute_inputs(b[index], perms[index - 1])
    score = _features(a[index], extras_a[index]) @ _features(incoming, extras_b[index]).T
    following = b[index + 1] if index + 1 == len(perms) else b[index + 1].index_select(0, perms[index + 1])
    units = a[index].shape[0]
    return score + _outgoing(a[index + 1], units) @ _outgoing(following, units).T  # (out, out)


def matching_objective(weights_a, weights_b, perms, extras_a=None, extras_b=None) -> float:
    """J(P): Σ_l <A_l, P_l B_l P_{l-1}ᵀ> plus the extras' inner products, in float64."""
    hidden = len(weights_a) - 1
    extras_a, extras_b = extras_a or [None] * hidden, extras_b or [None] * hidden
    total = 0.0
    for index, (a, b) in enumerate(zip(weights_a, weights_b)):
        if index > 0:
            b = permute_inputs(b, perms[index - 1])
        if index < hidden:
            b = b.index_select(0, perms[index])
            ea, eb = extras_a[index], extras_b[index]
            if ea is not None and eb is not None:
                total += float((ea.double() * eb.double().index_select(0, perms[index])).sum())
        total += float((a.double() * b.double()).sum())
    return total


def rebasin_weights(weights_a: Sequence[torch.Tensor], weights_b: Sequence[torch.Tensor],
                    extras_a: Sequence[torch.Tensor | None] | None = None,
                    extras_b: Sequence[torch.Tensor | None] | None = None, *, max_sweeps: int = 100,
                    rtol: float = 1e-12) -> list[torch.Tensor]:
    """Permutations of B's hidden units that align B to A by full weight matching.

    Args:
        weights_a, weights_b, extras_a, extras_b: as `similarity.match_weights`.
        max_sweeps: at most this many passes over the layers (a warning is logged if
            the last still changed a permutation).
        rtol: a layer's permutation is replaced only when its score rises by more than
            `rtol` of the score's size, so ties cannot cycle.

    Returns:
        One LongTensor per hidden layer, as `match_weights` returns them.

    Pitfalls:
        * A local optimum, like every weight-matching method: no permutation of a single
          layer improves J, but a joint change of several might.
        * Extras enter J on the same footing as weights; their scale relative to the
          weights' decides how much they steer the matching.

    Raises:
        ValueError: as `match_weights` (shapes differ, NaN or inf weights).
    """
    perms = match_weights(weights_a, weights_b, extras_a, extras_b)
    hidden = len(perms)
    extras_a = list(extras_a) if extras_a is not None else [None] * hidden
    extras_b = list(extras_b) if extras_b is not None else [None] * hidden
    for _ in range(max_sweeps):
        changed = False
        for index in range(hidden):
            score = _layer_score(weights_a, weights_b, extras_a, extras_b, perms, index)
            _, cols = linear_sum_assignment(score.cpu().numpy(), maximize=True)
            proposal = torch.as_tensor(cols, dtype=torch.long, device=perms[index].device)
            rows = torch.arange(len(cols), device=score.device)
            new, old = float(score[rows, proposal].sum()), float(score[rows, perms[index]].sum())
            if new - old > rtol * max(abs(new), abs(old), 1e-300):
                perms[index], changed = proposal, True
        if not changed:
            return perms
    log.warning("weight matching still improving after %d sweeps; returning the last permutations", max_sweeps)
    return perms
