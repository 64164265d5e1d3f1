"""`TaskKernelLinear`: one shared weight matrix, a different spatial kernel per task.

The multi-task trunk of the spatial-prior study: every task computes with the same
W but through its own kernel, ``W_eff(task) = W ⊙ K_task`` (multiply mode only), so
the kernels can act as task-specific scaffolding on shared weights. Each task's
kernel is built like `SpatialLinear`'s (a tensor, a kernel name / `KernelSpec`, or a
`wiringlab.schedules` schedule evaluated on the layer's distance matrix) and may be
moved to another centre (``shift``: the kernel's input axis rolled circularly) and/or
shuffled (a permutation drawn from the task's generator). `set_progress(t)` moves
every scheduled task kernel along its own schedule (the default of the multi-task
recipes: decay to uniform, ``Anneal(K, none)``).

With every task's kernel all ones, the layer is `nn.Linear` exactly for every task
(W ⊙ 1 = W in floating point): same init from the same generator, same outputs,
same gradients (tests/test_multitask.py).

`TaskKernelView` presents one (layer, task) pair with the single-kernel interface of
`SpatialLinear` (``schedule``, ``kernel``, ``set_progress``, ``kernel_at``,
``effective_weight``), so `engine.spatial.KernelScheduleCallback` drives per-task
schedules unchanged.

Pitfall: ``forward`` takes the task (``layer(x, task)``); code that calls
``layer(x)`` (single-task models) cannot use this layer. ``effective_weight()``
without a task is ``W ⊙ mean_t K_t`` (equal to every task's once the kernels have
decayed to uniform); analyses that care about one task pass it.

Pitfall: unlike ``SpatialLinear`` and ``LocalityLinear`` it is refused on the meta device
(its kernels are computed when it is built, and ``to_empty`` would leave them
uninitialised); build it on a real device. Sweeps never build multi-task models on meta.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import layer_distance
from ..init import reset_linear_like_
from ..kernels import KernelSpec, shuffle_index
from ..schedules import Anneal, Sharpen, Static

__all__ = ["TaskKernelLinear", "TaskKernelView"]

_SCHEDULES = (Static, Anneal, Sharpen)


def _as_schedule(kernel):
    if isinstance(kernel, str):
        return Static(KernelSpec(kernel))
    if isinstance(kernel, KernelSpec):
        return Static(kernel)
    return kernel


class TaskKernelLinear(nn.Linear):
    """A linear layer shared by tasks, computing ``x @ (W ⊙ K_task)ᵀ + b`` for the named task.

    Args:
        in_features, out_features, bias: as `nn.Linear`.
        tasks: the task names, in order (``forward`` accepts a name or its index).
        kernels: per task name: None (all ones), a tensor (out, in), a kernel name or
            `KernelSpec` (static) or a `Static`/`Anneal`/`Sharpen` schedule. Missing
            tasks get all ones.
        geometry: "line" or "grid" (see `wiringlab.geometry`), or a precomputed (out, in)
            distance tensor; used by scheduled kernels.
        metric: "euclidean" or "l1" distance on the grid.
        shifts: per task, the fraction of input units in [0, 1) by which the kernel's
            centre is moved (the kernel's columns rolled circularly): different centres.
        shuffle_generators: per task, a generator whose permutation scrambles that
            task's kernel positions (the shuffled control).
        device, dtype: as `nn.Linear`.

    Raises:
        ValueError: no tasks, repeated or unknown task names, a shift outside [0, 1), a
            kernel tensor / distance matrix of the wrong shape, or the meta device.
    """

    def __init__(self, in_features: int, out_features: int, tasks: Sequence[str], bias: bool = True, *,
                 kernels: Mapping[str, object] | None = None, geometry: str | torch.Tensor = "line",
                 metric: str = "euclidean", shifts: Mapping[str, float] | None = None,
                 shuffle_generators: Mapping[str, torch.Generator] | None = None, device=None, dtype=None) -> None:
        if torch.empty(0, device=device).is_meta:  # also under `with torch.device("meta")`
            raise ValueError("TaskKernelLinear cannot be built on the meta device (its kernels are computed when "
                             "it is built, and to_empty would leave them uninitialised); build it on a real device")
        tasks = tuple(tasks)
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be distinct names, at least one; got {tasks}")
        kernels, shifts, generators = dict(kernels or {}), dict(shifts or {}), dict(shuffle_generators or {})
        for name in (*kernels, *shifts, *generators):
            if name not in tasks:
                raise ValueError(f"unknown task {name!r}; the layer's tasks: {', '.join(tasks)}")
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        shape = (out_features, in_features)
        self.tasks = tasks
        self.schedules = tuple(_as_schedule(kernels.get(t)) if not isinstance(kernels.get(t), torch.Tensor)
                               else None for t in tasks)
        self.shifts = tuple(self._shift_units(shifts.get(t, 0.0), in_features) for t in tasks)
        distance = None
        if any(isinstance(s, _SCHEDULES) for s in self.schedules):
            distance = geometry if isinstance(geometry, torch.Tensor) else layer_distance(
                out_features, in_features, geometry, metric, dtype=factory["dtype"])
            if tuple(distance.shape) != shape:
                raise ValueError(f"distance matrix of shape {tuple(distance.shape)}; the layer needs {shape}")
            distance = distance.to(**factory)
        self.register_buffer("distance", distance, persistent=False)
        identity = torch.arange(out_features * in_features, device=factory["device"])
        perms = [shuffle_index(identity.numel(), generators[t]).to(factory["device"]) if t in generators else identity
                 for t in tasks]
        self.shuffled = tuple(t in generators for t in tasks)
        self.register_buffer("perm", torch.stack(perms), persistent=False)  # (T, out*in)
        self.register_buffer("kernels", torch.ones(len(tasks), *shape, **factory))  # (T, out, in)
        for index, task in enumerate(tasks):
            given = kernels.get(task)
            if isinstance(given, torch.Tensor):
                self.set_kernel_(task, self._placed(index, given.to(**factory)))
        self.set_progress(0.0)

    @staticmethod
    def _shift_units(shift: float, in_features: int) -> int:
        if not 0.0 <= shift < 1.0:
            raise ValueError(f"shift is a fraction of the input units in [0, 1), got {shift}")
        return round(shift * in_features) % in_features

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw W and b as `nn.Linear` does (from ``generator``)."""
        reset_linear_like_(self, generator)

    def task_index(self, task: str | int) -> int:
        """The index of ``task`` (a name or an index).

        Raises:
            ValueError: unknown task.
        """
        if isinstance(task, int) and 0 <= task < len(self.tasks):
            return task
        if task in self.tasks:
            return self.tasks.index(task)
        raise ValueError(f"unknown task {task!r}; the layer's tasks: {', '.join(self.tasks)}")

    def _placed(self, index: int, kernel: torch.Tensor) -> torch.Tensor:
        """``kernel`` moved to the task's centre (columns rolled) and shuffled if the task shuffles."""
        if self.shifts[index]:
            kernel = kernel.roll(self.shifts[index], dims=1)
        if self.shuffled[index]:
            kernel = kernel.reshape(-1)[self.perm[index]].reshape(kernel.shape)
        return kernel

    @torch.no_grad()
    def set_kernel_(self, task: str | int, kernel: torch.Tensor) -> None:
        """Copy ``kernel`` (out, in) into ``task``'s kernel in place, as given.

        Raises:
            ValueError: wrong shape or unknown task.
        """
        index = self.task_index(task)
        if tuple(kernel.shape) != tuple(self.kernels.shape[1:]):
            raise ValueError(f"kernel of shape {tuple(kernel.shape)}; the layer needs {tuple(self.kernels.shape[1:])}")
        self.kernels[index].copy_(kernel)

    @torch.no_grad()
    def kernel_at(self, task: str | int, t: float) -> torch.Tensor:
        """The kernel ``task`` uses at progress t (a copy of the current one if it has no schedule)."""
        index = self.task_index(task)
        schedule = self.schedules[index]
        if schedule is None:
            return self.kernels[index].clone()
        return self._placed(index, schedule.kernel(self.distance, t))

    @torch.no_grad()
    def set_progress(self, t: float, task: str | int | None = None) -> None:
        """Re-evaluate the scheduled kernel of ``task`` (None: of every task) at progress t."""
        indices = range(len(self.tasks)) if task is None else [self.task_index(task)]
        for index in indices:
            if self.schedules[index] is not None:
                self.set_kernel_(index, self.kernel_at(index, t))

    def effective_weight(self, task: str | int | None = None) -> torch.Tensor:
        """``W ⊙ K_task``; without a task ``W ⊙ mean_t K_t``."""
        if task is None:
            return self.weight * self.kernels.mean(0)
        return self.weight * self.kernels[self.task_index(task)]

    def forward(self, x: torch.Tensor, task: str | int) -> torch.Tensor:
        return F.linear(x, self.effective_weight(task), self.bias)

    def extra_repr(self) -> str:
        kinds = [("fixed" if s is None else type(s).__name__.lower()) + (", shuffled" if sh else "")
                 for s, sh in zip(self.schedules, self.shuffled)]
        per_task = ", ".join(f"{t}: {k}" for t, k in zip(self.tasks, kinds))
        return f"{super().extra_repr()}, kernels={{{per_task}}}"


class TaskKernelView:
    """One task of a `TaskKernelLinear`, seen as a single-kernel prior layer."""

    def __init__(self, layer: TaskKernelLinear, task: str) -> None:
        self.layer, self.task = layer, task
        self.index = layer.task_index(task)

    @property
    def schedule(self):
        return self.layer.schedules[self.index]

    @property
    def kernel(self) -> torch.Tensor:
        return self.layer.kernels[self.index]

    def kernel_at(self, t: float) -> torch.Tensor:
        return self.layer.kernel_at(self.index, t)

    def set_progress(self, t: float) -> None:
        self.layer.set_progress(t, self.index)

    def effective_weight(self) -> torch.Tensor:
        return self.layer.effective_weight(self.index)
