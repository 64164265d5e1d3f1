"""Effective sparsity of spatial priors, and how fast a run learns.

A spatial kernel never sets a weight to zero, but entries far below 1 silence their
connections in effect. The reference write-up counted kernel entries below 0.1 as
"effectively pruned"; `kernel_sparsity` is that share. `relative_sparsity` asks the
same of the learned effective weights: the share of |W_eff| below a fraction of the
layer's largest |W_eff| (scale-free, so layers and runs compare). `epochs_to_threshold`
reads a learning curve: the first epoch at which test accuracy reaches each level.

Pure functions; counts are returned alongside shares where pooling over layers needs them.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["kernel_sparsity", "relative_sparsity", "count_below", "count_relative_below", "epochs_to_threshold"]


def count_below(values: torch.Tensor, threshold: float) -> tuple[int, int]:
    """(number of entries of ``values`` strictly below ``threshold``, number of entries)."""
    return int((values < threshold).sum()), values.numel()


def count_relative_below(weight: torch.Tensor, threshold: float) -> tuple[float, int]:
    """(number of |w| strictly below ``threshold`` × max |w|, number of entries). An all-zero
    tensor counts as all below (nothing in it carries signal); a tensor holding NaN or inf (a
    diverging run) gives (NaN, n): no entry has a meaningful share of its maximum."""
    magnitude = weight.detach().abs()
    peak = magnitude.max() if magnitude.numel() else torch.zeros(())
    if not torch.isfinite(peak):  # max propagates NaN
        return math.nan, magnitude.numel()
    if peak == 0:
        return magnitude.numel(), magnitude.numel()
    return count_below(magnitude, float(threshold * peak))


def kernel_sparsity(kernel: torch.Tensor, threshold: float = 0.1) -> float:
    """Share of kernel entries below ``threshold`` (the reference: 0.1). NaN for an empty kernel."""
    below, total = count_below(kernel, threshold)
    return below / total if total else math.nan


def relative_sparsity(weight: torch.Tensor, threshold: float = 0.01) -> float:
    """Share of |w| below ``threshold`` × max |w| of the same tensor. NaN for an empty tensor."""
    below, total = count_relative_below(weight, threshold)
    return below / total if total else math.nan


def epochs_to_threshold(accuracies: Sequence[float | None], levels: Sequence[float]) -> list[int | None]:
    """For each level, the first epoch (1-based) whose accuracy is >= level; None if never.

    Args:
        accuracies: test accuracy after epoch 1, 2, ... (None/NaN entries never count).
        levels: accuracy levels in [0, 1].
    """
    first: list[int | None] = []
    for level in levels:
        hit = next((e for e, acc in enumerate(accuracies, start=1)
                    if acc is not None and math.isfinite(acc) and acc >= level), None)
        first.append(hit)
    return first
