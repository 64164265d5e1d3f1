"""`SpatialLinear`: an `nn.Linear` whose weights are shaped by a fixed spatial kernel.

The kernel K (out, in) is a buffer, never trained; the layer computes with

    multiply     W_eff = W ⊙ K
    normalized   W_eff = (W_i / ‖W_i‖) ⊙ K_i · scale_i   (direction from W, magnitude from K)
    capped       W_eff = clamp(W, -K, K)                (gradient 1 inside the cap, 0 outside)

and `effective_weight()` returns W_eff, which is what analyses read. With an all-ones
kernel and mode "multiply" the layer is `nn.Linear` exactly (W ⊙ 1 = W in floating
point): same init from the same generator, same outputs, same gradients (tested).

The kernel can be given as a tensor (any precomputed prior, e.g. a locality prior), as
a kernel name or `KernelSpec` evaluated on the layer's geometry, or as a schedule
(`wiringlab.schedules`) that `set_progress(t)` re-evaluates during training.
Evidence on cost: `bench/spatial_step.py` (multiply, static kernel vs nn.Linear).

Pitfalls: K is a buffer, so ``model.to(device)`` moves it and ``state_dict`` saves it
(a scheduled kernel is saved as it is at that moment); the distance matrix and the
shuffle permutation are non-persistent buffers rebuilt by the constructor. Built on the
meta device, the layer computes its buffers on the CPU and holds them until `to_empty`
materialises it (then they are in place, as after a normal construction; the weights
still need `reset_parameters` or a state_dict, as for `nn.Linear`). In normalized mode a
row of W that is exactly zero has no direction: `F.normalize` divides it by eps = 1e-12, so
its gradient is ~1e11 and one SGD step throws the row to norm ~1e10, after which its
direction barely moves (measured; init never gives a zero row, a loaded or hand-set one can).
"""

from __future__ import annotations

import contextlib
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import layer_distance
from ..init import reset_linear_like_
from ..kernels import KernelSpec, shuffle_index
from ..schedules import Anneal, Sharpen, Static

__all__ = ["SpatialLinear", "MODES"]

MODES = ("multiply", "normalized", "capped")
Mode = Literal["multiply", "normalized", "capped"]
_SCHEDULES = (Static, Anneal, Sharpen)


class SpatialLinear(nn.Linear):
    """A linear layer computing with ``W_eff`` = f(W, K) for a spatial kernel K.

    Args:
        in_features, out_features, bias: as `nn.Linear`.
        kernel: None (all ones), a tensor (out, in) used as is, a kernel name or
            `KernelSpec` (static), or a `Static`/`Anneal`/`Sharpen` schedule.
        geometry: "line" or "grid" (see `wiringlab.geometry`), or a precomputed (out, in)
            distance tensor; used when ``kernel`` is not a tensor.
        metric: "euclidean" or "l1" distance on the grid.
        in_shape: the input's spatial shape (e.g. (1, 28, 28)) for grid geometry.
        shuffle_generator: if given, every kernel is permuted by one permutation drawn
            from it (the shuffled control: same values, positions scrambled).
        mode: "multiply", "normalized" or "capped".
        scale: normalized mode only: "learnable" (a parameter per output unit) or
            "fixed" (a buffer); both start at the initial row norms of W, so at init
            the normalized layer equals the multiply one.
        device, dtype: as `nn.Linear`.

    Raises:
        ValueError: unknown mode or scale, or a kernel tensor of the wrong shape.
    """

    # the schedule only decides the kernel buffer's values (set_progress), not the forward
    stack_value_attributes = ("schedule",)
    # a fixed per-unit scale (mode "normalized") moves with its unit, as a learnable one
    # does; the kernel stays: it belongs to positions (`permute_hidden_units_`)
    unit_buffers = ("scale",)

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 kernel=None, geometry: str | torch.Tensor = "line", metric: str = "euclidean",
                 in_shape: Sequence[int] | None = None, shuffle_generator: torch.Generator | None = None,
                 mode: Mode = "multiply", scale: Literal["learnable", "fixed"] = "learnable",
                 device=None, dtype=None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
        if scale not in ("learnable", "fixed"):
            raise ValueError(f"unknown scale {scale!r}; allowed: learnable, fixed")
        self.mode, self.scale_kind = mode, scale
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        deferred = self.weight.is_meta  # no values on meta: build the buffers on the CPU, keep them for later
        factory = {"device": torch.device("cpu") if deferred else self.weight.device, "dtype": self.weight.dtype}
        # under `with torch.device("meta")` the geometry's own tensors would be meta too, also when the
        # layer itself is asked for on a real device
        on_meta = deferred or torch.get_default_device().type == "meta"
        with torch.device("cpu") if on_meta else contextlib.nullcontext():
            self._build_buffers(kernel, geometry, metric, in_shape, shuffle_generator, factory)
        self._deferred_buffers = self._defer_buffers() if deferred else None
        if mode == "normalized":
            initial = self.weight.detach().norm(dim=1)
            if scale == "learnable":
                self.scale = nn.Parameter(initial.clone())
            else:
                self.register_buffer("scale", initial.clone())

    def _build_buffers(self, kernel, geometry, metric, in_shape, shuffle_generator, factory) -> None:
        """The distance (for a schedule), the shuffle index and the kernel buffers, on `factory`'s device."""
        out_features, in_features = self.out_features, self.in_features
        shape = (out_features, in_features)
        if isinstance(geometry, torch.Tensor) and tuple(geometry.shape) != shape:  # also when no kernel reads it
            raise ValueError(f"distance matrix of shape {tuple(geometry.shape)}; the layer needs {shape}")
        self.schedule = None
        if isinstance(kernel, (str, KernelSpec)):
            kernel = Static(KernelSpec(kernel) if isinstance(kernel, str) else kernel)
        if isinstance(kernel, _SCHEDULES):
            self.schedule = kernel
            distance = geometry if isinstance(geometry, torch.Tensor) else layer_distance(
                out_features, in_features, geometry, metric, in_shape, dtype=factory["dtype"])
            if tuple(distance.shape) != shape:
                raise ValueError(f"distance matrix of shape {tuple(distance.shape)}; the layer needs {shape}")
            self.register_buffer("distance", distance.to(**factory), persistent=False)
        else:
            self.register_buffer("distance", None, persistent=False)
        index = None if shuffle_generator is None else shuffle_index(out_features * in_features, shuffle_generator)
        self.register_buffer("shuffle_idx", None if index is None else index.to(factory["device"]), persistent=False)
        self.register_buffer("kernel", torch.ones(shape, **factory))
        if self.schedule is not None:
            self.set_progress(0.0)
        elif kernel is not None:
            self.set_kernel_(self._permuted(kernel.to(**factory)))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw W and b as `nn.Linear` does (from ``generator``); in normalized mode reset
        the scale to the new row norms of W."""
        reset_linear_like_(self, generator)
        scale = getattr(self, "scale", None)
        if isinstance(scale, torch.Tensor):
            with torch.no_grad():
                scale.copy_(self.weight.norm(dim=1))

    def _defer_buffers(self) -> dict[str, torch.Tensor]:
        """Put meta tensors in place of the buffers and return their values (on the CPU)."""
        values = {name: buffer for name, buffer in self._buffers.items() if buffer is not None}
        for name, buffer in values.items():
            self._buffers[name] = buffer.to("meta")
        return values

    def _apply(self, fn, recurse=True):
        module = super()._apply(fn, recurse)
        self._materialise_deferred(every=True)  # `to_empty`: its buffers are uninitialised memory
        return module

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._materialise_deferred(every=False)  # assign=True: the kernel loaded, the distance still meta

    def _materialise_deferred(self, every: bool) -> None:
        """Once the layer has real weights, give its buffers the values computed when it was
        built on meta: all of them (`every`), or those still on meta."""
        if getattr(self, "_deferred_buffers", None) is None or self.weight.is_meta:
            return
        for name, value in self._deferred_buffers.items():
            if every or self._buffers[name].is_meta:
                dtype = self.weight.dtype if value.is_floating_point() else value.dtype
                self._buffers[name] = value.to(device=self.weight.device, dtype=dtype)
        self._deferred_buffers = None

    def _permuted(self, kernel: torch.Tensor) -> torch.Tensor:
        if self.shuffle_idx is None:
            return kernel
        return kernel.reshape(-1)[self.shuffle_idx].reshape(kernel.shape)

    @torch.no_grad()
    def set_kernel_(self, kernel: torch.Tensor) -> None:
        """Copy ``kernel`` (out, in) into the kernel buffer in place, as given.

        Raises:
            ValueError: wrong shape.
        """
        if tuple(kernel.shape) != tuple(self.kernel.shape):
            raise ValueError(f"kernel of shape {tuple(kernel.shape)}; the layer needs {tuple(self.kernel.shape)}")
        self.kernel.copy_(kernel)

    @torch.no_grad()
    def kernel_at(self, t: float) -> torch.Tensor:
        """The kernel the layer uses at progress t (its schedule's, shuffled when the layer
        shuffles); a copy of the current kernel when the layer has no schedule."""
        if self.schedule is None:
            return self.kernel.clone()
        return self._permuted(self.schedule.kernel(self.distance, t))

    @torch.no_grad()
    def set_progress(self, t: float) -> None:
        """Re-evaluate a scheduled kernel at progress t ∈ [0, 1] (no-op without a schedule)."""
        if self.schedule is not None:
            self.set_kernel_(self.kernel_at(t))

    def effective_weight(self) -> torch.Tensor:
        """W_eff, the weight the layer computes with (a function of W; K is constant)."""
        if self.mode == "multiply":
            return self.weight * self.kernel
        if self.mode == "capped":
            return torch.clamp(self.weight, -self.kernel, self.kernel)
        direction = F.normalize(self.weight, dim=1)  # (out, in), unit rows
        return direction * self.kernel * self.scale.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        schedule = type(self.schedule).__name__.lower() if self.schedule is not None else "fixed"
        extra = f", scale={self.scale_kind}" if self.mode == "normalized" else ""
        return (f"{super().extra_repr()}, mode={self.mode}{extra}, kernel={schedule}"
                f"{', shuffled' if self.shuffle_idx is not None else ''}")
