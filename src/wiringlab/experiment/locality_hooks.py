"""Where a run config's prior block becomes a loss term: L1 on the block's linear layer.

``prior_block.l1 · Σ|W|`` over the raw weight W of the block's linear layer (plain in the
control, `LocalityLinear` in the treatment, so both get the same term). On raw W, not on
``P ⊙ W``: a connection that transmits w over distance d needs |W| = |w| / P(d), so
long connections cost more — the wiring cost of the locality prior. `train.l1` is a
separate, model-wide term (every linear and conv weight).
"""

from __future__ import annotations

from ..models import prior_block

__all__ = ["locality_penalties"]


def locality_penalties(config, model) -> list:
    """``[λ·Σ|W|]`` for the prior block's linear layer when ``prior_block.l1 = λ > 0``, else []."""
    block_cfg = getattr(config.model, "prior_block", None)
    if block_cfg is None or block_cfg.l1 <= 0:
        return []
    block = prior_block(model)
    if block is None:
        raise RuntimeError("the config has a prior_block but the model has none")
    layer, strength = block[0], block_cfg.l1
    # read layer.weight at call time: a stacked run swaps in its member slice (functional_call)
    return [lambda: strength * layer.weight.abs().sum()]
