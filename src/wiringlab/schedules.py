"""Kernel schedules: pure functions of training progress t ∈ [0, 1].

Three schedules cover the questions of the spatial-prior study:

- `Static`: the same kernel throughout.
- `Anneal`: blend kernel A into kernel B, ``(1 - s)·A + s·B``, with s rising from 0 to
  1 linearly (s = t) or by half a cosine (s = (1 - cos πt) / 2: slow at both ends).
  none → X switches a prior on during training; X → none switches it off.
- `Sharpen`: an exponential kernel whose k moves from k_start to k_end, linearly or
  geometrically (k_start · (k_end / k_start)^t: equal ratios per unit of t).

Every schedule maps (distances, t) to a kernel; t = 0 gives the start kernel and t = 1
the end kernel exactly. Which t a training step sees is the caller's choice
(`wiringlab.engine.spatial.KernelScheduleCallback`: per step or per epoch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Union

import torch

from .kernels import KernelSpec, blend

__all__ = ["ramp", "interpolate", "progress_at", "Static", "Anneal", "Sharpen", "KernelSchedule"]

RampShape = Literal["linear", "cosine"]
InterpShape = Literal["linear", "geometric"]


def _check_t(t: float) -> float:
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"progress t must lie in [0, 1], got {t}")
    return float(t)


def ramp(t: float, shape: RampShape = "linear") -> float:
    """Blend factor s(t): ``t`` (linear) or ``(1 - cos πt) / 2`` (cosine); s(0)=0, s(1)=1."""
    t = _check_t(t)
    if shape == "linear":
        return t
    if shape == "cosine":
        return 0.0 if t == 0.0 else 1.0 if t == 1.0 else 0.5 * (1.0 - math.cos(math.pi * t))
    raise ValueError(f"unknown ramp shape {shape!r}; allowed: linear, cosine")


def interpolate(start: float, end: float, t: float, shape: InterpShape = "linear") -> float:
    """A value moving from ``start`` (t=0) to ``end`` (t=1), linearly or geometrically.

    Raises:
        ValueError: geometric with a non-positive endpoint (no geometric path through 0).
    """
    t = _check_t(t)
    if t == 1.0:
        return float(end)
    if shape == "linear":
        return start + (end - start) * t
    if shape == "geometric":
        if start <= 0 or end <= 0:
            raise ValueError(f"geometric interpolation needs positive endpoints, got {start} and {end}")
        return start * (end / start) ** t
    raise ValueError(f"unknown interpolation shape {shape!r}; allowed: linear, geometric")


def progress_at(index: int, count: int) -> float:
    """t of update ``index`` of ``count`` (0-based): ``index / (count - 1)``, so the first
    update sees t = 0 and the last t = 1; a single update sees t = 1 (the end kernel)."""
    if count <= 1:
        return 1.0
    return min(max(index / (count - 1), 0.0), 1.0)


@dataclass(frozen=True)
class Static:
    """The kernel ``spec`` at every t."""

    spec: KernelSpec

    def kernel(self, distance: torch.Tensor, t: float) -> torch.Tensor:
        _check_t(t)
        return self.spec.evaluate(distance)


@dataclass(frozen=True)
class Anneal:
    """``(1 - s)·start + s·end`` with s = `ramp`(t, shape)."""

    start: KernelSpec
    end: KernelSpec
    shape: RampShape = "linear"

    def kernel(self, distance: torch.Tensor, t: float) -> torch.Tensor:
        s = ramp(t, self.shape)
        if s == 0.0:
            return self.start.evaluate(distance)
        if s == 1.0:
            return self.end.evaluate(distance)
        return blend(self.start.evaluate(distance), self.end.evaluate(distance), s)


@dataclass(frozen=True)
class Sharpen:
    """The exponential kernel ``spec`` with k = `interpolate`(k_start, k_end, t, shape).

    Raises:
        ValueError: ``spec`` is not exponential (only its k has a meaning here).
    """

    spec: KernelSpec
    k_start: float = 3.0
    k_end: float = 15.0
    shape: InterpShape = "linear"

    def __post_init__(self) -> None:
        if self.spec.name != "exponential":
            raise ValueError(f"sharpen schedules move an exponential kernel's k; got kernel {self.spec.name!r}")

    def k_at(self, t: float) -> float:
        return interpolate(self.k_start, self.k_end, t, self.shape)

    def kernel(self, distance: torch.Tensor, t: float) -> torch.Tensor:
        return self.spec.with_k(self.k_at(t)).evaluate(distance)


KernelSchedule = Union[Static, Anneal, Sharpen]
