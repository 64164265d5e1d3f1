"""The multi-task network: per-task input adapters and heads around a trunk of width W.

    task t:  x (flattened) → adapter_t (in_t → W) → act → [trunk layer (W → W) → act] × depth → head_t (W → classes_t)

The trunk is shared by all tasks (given as a list: one `nn.ModuleList`, ``net.shared``) or
each task has its own (given as a mapping task → list: the ``separate`` baseline, the
same architecture per task, no parameter shared, trained in the same loop on the same
batches). Trunk layers are
plain `nn.Linear` or `TaskKernelLinear` (one kernel per task on the shared weights);
``forward(x, task)`` routes through the task's adapter, kernels and head.

`task_view(task)` is an ``nn.Module`` computing ``net(x, task)``, so single-task code
(`engine.evaluate`, analyses) works on one task of the network.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from .layers import LayerSite, make_linear
from .layers.spatial_build import schedule_from_config
from .layers.task_kernel import TaskKernelLinear
from .models import _ACTIVATIONS
from .seeding import make_generator

__all__ = ["MultiTaskNet", "TaskView", "ACTIVATIONS", "build_multitask_model"]

ACTIVATIONS = _ACTIVATIONS  # the activations of `models`, by name


class MultiTaskNet(nn.Module):
    """Adapters, a trunk (shared or per task) and heads, keyed by task name.

    Args:
        adapters: per task, a linear layer from the task's flattened input to the trunk width.
        trunk: a list of trunk layers (shared by all tasks), or per task its own list.
        heads: per task, a linear layer from the trunk width to the task's classes.
        activation: a name of `ACTIVATIONS`, applied after the adapter and every trunk layer.

    Raises:
        ValueError: adapters, heads (and per-task trunks) name different tasks, or an
            unknown activation.
    """

    def __init__(self, adapters: Mapping[str, nn.Module], trunk: Sequence[nn.Module] | Mapping[str, Sequence[nn.Module]],
                 heads: Mapping[str, nn.Module], activation: str = "relu") -> None:
        super().__init__()
        tasks = list(adapters)
        if list(heads) != tasks or (isinstance(trunk, Mapping) and list(trunk) != tasks):
            raise ValueError(f"adapters, heads and trunks must name the same tasks in the same order; "
                             f"adapters: {tasks}, heads: {list(heads)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        self.tasks = tuple(tasks)
        self.shared = not isinstance(trunk, Mapping)
        self.adapters = nn.ModuleDict(adapters)
        self.trunk = (nn.ModuleList(trunk) if self.shared
                      else nn.ModuleDict({t: nn.ModuleList(layers) for t, layers in trunk.items()}))
        self.heads = nn.ModuleDict(heads)
        self.act = ACTIVATIONS[activation]()

    def trunk_layers(self, task: str) -> nn.ModuleList:
        """The trunk layers ``task`` computes with (the shared ones, or its own)."""
        return self.trunk if self.shared else self.trunk[task]

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        if task not in self.adapters:
            raise ValueError(f"unknown task {task!r}; the network's tasks: {', '.join(self.tasks)}")
        h = self.act(self.adapters[task](x.flatten(1)))  # (B, W)
        for layer in self.trunk_layers(task):
            h = self.act(layer(h, task) if isinstance(layer, TaskKernelLinear) else layer(h))  # (B, W)
        return self.heads[task](h)  # (B, classes_task)

    def task_view(self, task: str) -> "TaskView":
        return TaskView(self, task)

    @torch.no_grad()
    def named_effective_weights(self) -> dict[str, torch.Tensor]:
        """What every task computes with, by name: ``adapter.<task>``, ``trunk<i>.<task>``
        (W ⊙ K_task on a shared trunk with kernels; the task's own W when separate) and
        ``head.<task>``."""
        out = {}
        for task in self.tasks:
            out[f"adapter.{task}"] = self.adapters[task].weight.detach().clone()
            for i, layer in enumerate(self.trunk_layers(task)):
                weight = layer.effective_weight(task) if isinstance(layer, TaskKernelLinear) else layer.weight
                out[f"trunk{i}.{task}"] = weight.detach().clone()
            out[f"head.{task}"] = self.heads[task].weight.detach().clone()
        return out


class TaskView(nn.Module):
    """``net(x, task)`` as a single-input module (its parameters are the network's)."""

    def __init__(self, net: MultiTaskNet, task: str) -> None:
        super().__init__()
        if task not in net.tasks:
            raise ValueError(f"unknown task {task!r}; the network's tasks: {', '.join(net.tasks)}")
        self.net, self.task = net, task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.task)


def _plain_linear(in_features: int, out_features: int, index: int, device, dtype, *, is_output=False,
                  in_shape=None) -> nn.Module:
    from .experiment.config import LinearLayerConfig  # lazy: experiment imports this module

    site = LayerSite(in_features, out_features, index, is_output=is_output, in_shape=in_shape)
    return make_linear(LinearLayerConfig(), site, device=device, dtype=dtype)


def _task_kernel_trunk_layer(config, index: int, device, dtype) -> TaskKernelLinear:
    """Trunk layer ``index`` with every task's kernel and schedule (`MultitaskConfig.tasks[*].kernel`).
    A shuffled task draws its permutation from ``make_generator(shuffle_seed, "shuffle/<task>/trunk<index>")``
    on the CPU: the same control for every training seed and device, its own per layer and task."""
    kernels = {name: task.kernel for name, task in config.tasks.items()}
    generators = {name: make_generator(k.shuffle_seed, f"shuffle/{name}/trunk{index}")
                  for name, k in kernels.items() if k.shuffle_seed is not None}
    return TaskKernelLinear(
        config.width, config.width, tuple(kernels),
        kernels={name: schedule_from_config(k) for name, k in kernels.items()},
        geometry=config.geometry, metric=config.metric, shifts={name: k.shift for name, k in kernels.items()},
        shuffle_generators=generators, device=device, dtype=dtype,
    )


def build_multitask_model(config, shapes: Mapping[str, tuple[Sequence[int], int]], *, device=None,
                          dtype=None) -> MultiTaskNet:
    """The network a `MultitaskConfig` describes.

    Conditions: ``separate`` (a trunk of plain linear layers per task), ``no_spatial`` (one
    shared trunk of plain linear layers), ``spatial_decay`` (one shared trunk of
    `TaskKernelLinear` with each task's kernel and schedule).

    Args:
        config: a `MultitaskConfig`.
        shapes: per task name, (input shape of one sample, number of classes).

    Raises:
        ValueError: ``shapes`` does not name exactly the config's tasks.
    """
    tasks = list(config.tasks)
    if sorted(shapes) != sorted(tasks):
        raise ValueError(f"shapes for tasks {sorted(shapes)}; the config's tasks are {sorted(tasks)}")
    width = config.width

    def plain_trunk() -> list[nn.Module]:
        return [_plain_linear(width, width, 1 + i, device, dtype) for i in range(config.depth)]

    adapters = {t: _plain_linear(math.prod(shapes[t][0]), width, 0, device, dtype,
                                 in_shape=tuple(shapes[t][0]) if len(shapes[t][0]) > 1 else None) for t in tasks}
    if config.condition == "separate":
        trunk = {t: plain_trunk() for t in tasks}
    elif config.condition == "no_spatial":
        trunk = plain_trunk()
    else:
        trunk = [_task_kernel_trunk_layer(config, i, device, dtype) for i in range(config.depth)]
    heads = {t: _plain_linear(width, shapes[t][1], 1 + config.depth, device, dtype, is_output=True) for t in tasks}
    return MultiTaskNet(adapters, trunk, heads, config.activation)
