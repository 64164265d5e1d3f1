"""Loss terms on weights, as callables the training loop adds to the loss every step.

`decay_to_target` is weight decay toward a target instead of toward zero:
``λ · Σ (W - T)²``. With T = K (the layer's spatial kernel) it is the reference
write-up's decay-to-kernel; with T = 0 it is the plain L2 penalty λ·ΣW², the
like-for-like control (note: an optimizer's ``weight_decay=wd`` equals the gradient
of (wd/2)·ΣW², half the strength of this term at the same number).
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["decay_to_target", "decay_penalty"]


def decay_to_target(weight: torch.Tensor, target: torch.Tensor | None, strength: float) -> torch.Tensor:
    """``strength · Σ (weight - target)²`` (target None = zero), a scalar tensor.

    Raises:
        ValueError: negative strength, or a target that does not broadcast to ``weight``.
    """
    if strength < 0:
        raise ValueError(f"decay strength must be >= 0, got {strength}")
    if target is None:
        return strength * weight.square().sum()
    if torch.broadcast_shapes(weight.shape, target.shape) != weight.shape:
        raise ValueError(f"target of shape {tuple(target.shape)} does not match weight {tuple(weight.shape)}")
    return strength * (weight - target).square().sum()


def decay_penalty(layer: torch.nn.Module, strength: float, target: str = "kernel") -> Callable[[], torch.Tensor]:
    """A penalty callable for ``layer``: decay of ``layer.weight`` toward ``layer.kernel`` (read
    at call time, so a scheduled kernel is followed) or toward zero.

    Raises:
        ValueError: unknown target, or target "kernel" for a layer without a kernel.
    """
    if target not in ("kernel", "zero"):
        raise ValueError(f"unknown decay target {target!r}; allowed: kernel, zero")
    if target == "kernel" and getattr(layer, "kernel", None) is None:
        raise ValueError(f"decay to kernel needs a layer with a kernel; {type(layer).__name__} has none")
    if target == "kernel":
        return lambda: decay_to_target(layer.weight, layer.kernel, strength)
    return lambda: decay_to_target(layer.weight, None, strength)
