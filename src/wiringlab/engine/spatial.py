"""Callbacks of spatial priors: kernel schedules and per-epoch sparsity metrics.

`KernelScheduleCallback` moves every scheduled prior layer of a model along its
schedule: before every optimizer step (t = step / (total_steps - 1)) or before the
first step of every epoch (t = epoch / (epochs - 1)), so the first update sees the
start kernel and the last one the end kernel; evaluation after an epoch uses the
kernel of that epoch's last step.

`SpatialMetricsCallback` logs, at every epoch end, over all prior layers pooled
(entry-weighted): ``kernel_sparsity`` (share of kernel entries below each layer's
``sparsity_threshold``, the reference's 0.1), ``weight_sparsity`` (share of |W_eff|
below ``weight_threshold`` × that layer's max |W_eff|) and ``kernel_mean``. At train
start it writes each prior layer's kernel at t = 0, 0.5 and 1 to
``run_dir/kernels.safetensors`` (float16) for the report's kernel figure.

Pitfall: the schedule callback recomputes a kernel from its distance matrix at every
step: an elementwise pass over (out, in), small next to the layer's matmuls; use
``every: epoch`` when that still matters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..analysis.sparsity import count_below, count_relative_below
from ..layers.spatial import SpatialLinear
from ..schedules import Static, progress_at
from .callbacks import Callback, TrainState

__all__ = ["PriorLayer", "KernelScheduleCallback", "SpatialMetricsCallback", "KERNEL_SNAPSHOTS"]

KERNEL_SNAPSHOTS = {"start": 0.0, "middle": 0.5, "end": 1.0}  # name -> progress t


@dataclass(frozen=True)
class PriorLayer:
    """A prior layer of a model with its name ("linear<i>", forward order) and settings."""

    name: str
    layer: SpatialLinear
    every: str = "step"  # when its schedule is re-evaluated: "step" | "epoch"
    sparsity_threshold: float = 0.1
    weight_threshold: float = 0.01


class KernelScheduleCallback(Callback):
    """Updates the kernel of every scheduled layer in ``layers`` (a list of `PriorLayer`)."""

    def __init__(self, layers: list[PriorLayer]) -> None:
        self.layers = [p for p in layers if p.layer.schedule is not None]
        # a static kernel is set once at the start: re-evaluating it every step cost ~1 ms
        # per 784 x 1000 layer for nothing
        self.moving = [p for p in self.layers if not isinstance(p.layer.schedule, Static)]

    def on_train_start(self, state: TrainState) -> None:
        for prior in self.layers:
            prior.layer.set_progress(0.0)

    def on_step_start(self, state: TrainState) -> None:
        epoch_start = state.step % max(state.steps_per_epoch, 1) == 0
        for prior in self.moving:
            if prior.every == "step":
                prior.layer.set_progress(progress_at(state.step, state.total_steps))
            elif epoch_start:
                prior.layer.set_progress(progress_at(state.step // state.steps_per_epoch, state.epochs))


class SpatialMetricsCallback(Callback):
    """Pooled effective-sparsity metrics of ``layers`` at each epoch end; kernel snapshots."""

    def __init__(self, layers: list[PriorLayer]) -> None:
        self.layers = list(layers)

    def on_train_start(self, state: TrainState) -> None:
        if state.run_dir is None or not self.layers:
            return
        from ..experiment.store import RunFolder

        snapshots = {f"{p.name}.{label}": p.layer.kernel_at(t).to(torch.float16)
                     for p in self.layers for label, t in KERNEL_SNAPSHOTS.items()}
        RunFolder(state.run_dir).write_weights(snapshots, "kernels.safetensors")

    @torch.no_grad()
    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        kernel_below = weight_below = total = 0
        kernel_sum = 0.0
        for prior in self.layers:
            layer = prior.layer
            below, n = count_below(layer.kernel, prior.sparsity_threshold)
            kernel_below, total = kernel_below + below, total + n
            weight_below += count_relative_below(layer.effective_weight(), prior.weight_threshold)[0]
            kernel_sum += float(layer.kernel.double().sum())
        if total == 0:
            return {}
        return {"kernel_sparsity": kernel_below / total, "weight_sparsity": weight_below / total,
                "kernel_mean": kernel_sum / total}
