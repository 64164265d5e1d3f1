"""Hooks into the training loop.

A callback sees a `TrainState` at run start, before and after every optimizer step,
and at each epoch end (where it may return metrics to log). Kernel schedules, SET
evolution and weight snapshots are callbacks; the loop itself knows none of them.

Pitfall: `on_step_*` runs hundreds of times per epoch; anything that synchronises with
the device there (`.item()`, printing a tensor) stalls a GPU run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["TrainState", "Callback", "CallbackList"]


@dataclass
class TrainState:
    """What a callback can read (and, with care, change) during training."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    steps_per_epoch: int
    seed: int
    device: torch.device
    run_dir: Path | None = None
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def progress(self) -> float:
        """Training progress t in [0, 1]: completed steps over total steps."""
        return self.step / max(self.total_steps, 1)


class Callback:
    """Base class: override the hooks you need; each default does nothing.

    Set `reads_gradients = True` on a callback that reads parameters' `.grad`: the fused MLP
    step (`engine.fused_mlp`) then fills `.grad` as autograd would, instead of folding the
    gradient into the momentum buffer.
    """

    reads_gradients = False

    def on_train_start(self, state: TrainState) -> None: ...

    def on_step_start(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState) -> dict[str, float] | None: ...

    def on_train_end(self, state: TrainState) -> None: ...


class CallbackList(Callback):
    """Calls each callback in order; merges the metrics they return at epoch end."""

    def __init__(self, callbacks=()) -> None:
        self.callbacks = list(callbacks)

    @property
    def reads_gradients(self) -> bool:
        return any(cb.reads_gradients for cb in self.callbacks)

    def on_train_start(self, state):
        for cb in self.callbacks:
            cb.on_train_start(state)

    def on_step_start(self, state):
        for cb in self.callbacks:
            cb.on_step_start(state)

    def on_step_end(self, state):
        for cb in self.callbacks:
            cb.on_step_end(state)

    def on_epoch_end(self, state):
        metrics: dict[str, float] = {}
        for cb in self.callbacks:
            metrics.update(cb.on_epoch_end(state) or {})
        return metrics

    def on_train_end(self, state):
        for cb in self.callbacks:
            cb.on_train_end(state)
