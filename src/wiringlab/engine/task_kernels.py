"""Per-task kernels of a multi-task trunk: schedules and metrics as callbacks.

Schedules reuse `engine.spatial.KernelScheduleCallback` unchanged: every (trunk layer,
task) pair is a `TaskKernelView`, which has the single-kernel interface, so each task's
kernel follows its own schedule with the same rule for t (per step or per epoch).

`TaskKernelMetricsCallback` logs, at every epoch end and per task (pooled over the
trunk layers, entry-weighted), ``kernel_mean/<task>`` (1 = uniform: the kernel has fully
decayed) and ``kernel_sparsity/<task>`` (share of entries below ``sparsity_threshold``,
the reference's 0.1). At train start it writes each task's kernel of every trunk layer
at t = 0, 0.5 and 1 to ``run_dir/task_kernels.safetensors`` (float16, keys
``trunk<i>.<task>.<start|middle|end>``) for the report's kernel figure.
"""

from __future__ import annotations

import torch

from ..analysis.sparsity import count_below
from ..layers.task_kernel import TaskKernelLinear, TaskKernelView
from .callbacks import Callback, TrainState
from .spatial import KERNEL_SNAPSHOTS, KernelScheduleCallback, PriorLayer

__all__ = ["task_kernel_layers", "task_kernel_priors", "TaskKernelMetricsCallback", "TASK_KERNELS_FILE"]

TASK_KERNELS_FILE = "task_kernels.safetensors"


def task_kernel_layers(model: torch.nn.Module) -> list[TaskKernelLinear]:
    """The `TaskKernelLinear` layers of ``model``, in module order (trunk0, trunk1, ...)."""
    return [m for m in model.modules() if isinstance(m, TaskKernelLinear)]


def task_kernel_priors(model: torch.nn.Module, every: dict[str, str] | None = None) -> list[PriorLayer]:
    """A `PriorLayer` per (trunk layer, task), named ``trunk<i>.<task>``; ``every[task]`` says
    when that task's schedule is re-evaluated ("step", the default, or "epoch")."""
    every = every or {}
    return [PriorLayer(f"trunk{i}.{task}", TaskKernelView(layer, task), every.get(task, "step"))
            for i, layer in enumerate(task_kernel_layers(model)) for task in layer.tasks]


class TaskKernelMetricsCallback(Callback):
    """Per-task kernel metrics of the `TaskKernelLinear` layers of a model; kernel snapshots."""

    def __init__(self, model: torch.nn.Module, sparsity_threshold: float = 0.1) -> None:
        self.layers = task_kernel_layers(model)
        self.sparsity_threshold = sparsity_threshold

    def on_train_start(self, state: TrainState) -> None:
        if state.run_dir is None or not self.layers:
            return
        from ..experiment.store import RunFolder

        snapshots = {f"trunk{i}.{task}.{label}": layer.kernel_at(task, t).to(torch.float16)
                     for i, layer in enumerate(self.layers) for task in layer.tasks
                     for label, t in KERNEL_SNAPSHOTS.items()}
        RunFolder(state.run_dir).write_weights(snapshots, TASK_KERNELS_FILE)

    @torch.no_grad()
    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        if not self.layers:
            return {}
        metrics = {}
        for task in self.layers[0].tasks:
            kernels = [layer.kernels[layer.task_index(task)] for layer in self.layers]
            total = sum(k.numel() for k in kernels)
            below = sum(count_below(k, self.sparsity_threshold)[0] for k in kernels)
            metrics[f"kernel_mean/{task}"] = sum(float(k.double().sum()) for k in kernels) / total
            metrics[f"kernel_sparsity/{task}"] = below / total
        return metrics


def task_kernel_callbacks(model: torch.nn.Module, every: dict[str, str] | None = None,
                          sparsity_threshold: float = 0.1) -> list[Callback]:
    """The schedule and metrics callbacks of a multi-task model (none without task kernels)."""
    if not task_kernel_layers(model):
        return []
    return [KernelScheduleCallback(task_kernel_priors(model, every)), TaskKernelMetricsCallback(model, sparsity_threshold)]
