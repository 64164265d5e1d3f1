"""The multi-task training loop: every step draws a batch of every task; one combined loss.

    loss = Σ_task loss_weight_task · cross_entropy(net(x_task, task), y_task)   (+ penalties, + L1)

**Epochs and cycling (exact definition).** The *lead* task is the one with the most
batches per pass, ceil(n_train / batch_size) (ties: the first task). An epoch is one
pass over the lead task, batched exactly like `engine.train`: a fresh permutation
from the lead's data generator, the last batch possibly smaller. Every other task
draws ``batch_size`` samples per step from an endless *stream*: fresh permutations of
its training set, concatenated (a batch may span the end of one permutation and the
start of the next). The stream is never restarted (not at epoch boundaries either),
so after s steps a task has drawn s · batch_size samples and each of its n samples
exactly ⌊s · batch_size / n⌋ or that plus one times; each of its passes is one
permutation (`CyclingBatches`, tested).

Seeding: task ``name`` draws its order from ``make_generator(seed, "data/<name>")``, so a
task's batches are the same in every condition of the same tasks (the ``separate``
baseline sees exactly the batches the shared trunk sees) and whichever other tasks share
the run, as long as the lead task stays the lead: a lead's epoch ends with a short batch,
a cycling task's batch may span two permutations.

Per epoch the record holds, per task, ``train_loss/<task>`` and ``train_acc/<task>``
(means over the samples drawn that epoch) and ``test_loss/<task>``, ``test_acc/<task>``;
plus ``train_loss`` = Σ loss_weight · train_loss/<task> (the objective; NaN/inf marks the
run diverged), and the unweighted means over tasks ``train_acc``, ``test_loss``,
``test_acc``. Callbacks see the usual `TrainState` (steps are the lead task's).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..seeding import make_generator
from .callbacks import CallbackList, TrainState
from .optim import build_optimizer, set_epoch_lr, weight_parameters
from .precision import exact_cudnn
from .tensors import DeviceData, iterate_batches
from .trainer import (TrainResult, check_batchnorm_batches, diverged, evaluate, loss_sum_dtype, mark_diverged,
                      optimizer_step, record_epoch)

__all__ = ["TaskData", "CyclingBatches", "lead_task", "train_multitask"]


@dataclass(frozen=True)
class TaskData:
    """One task of a multi-task run: its name, data on the device, loss weight, batch size."""

    name: str
    data: DeviceData
    loss_weight: float = 1.0
    batch_size: int = 128

    @property
    def batches_per_pass(self) -> int:
        return math.ceil(len(self.data.x_train) / self.batch_size)


class CyclingBatches:
    """An endless stream of index batches over ``range(n)``: concatenated fresh permutations.

    Args:
        n: dataset size (> 0).
        batch_size: indices per batch (may exceed ``n``: a batch then spans several passes).
        generator: the source of the permutations (on ``device``).
        device: where the index tensors live.

    Raises:
        ValueError: ``n`` or ``batch_size`` < 1.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"a cycling stream needs n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size, self.generator, self.device = n, batch_size, generator, device
        self.order = torch.randperm(n, generator=generator, device=device)
        self.position = 0  # next unread index of `order`
        self.passes = 1  # permutations drawn so far

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        parts, need = [], self.batch_size
        while need > 0:
            if self.position == self.n:
                self.order = torch.randperm(self.n, generator=self.generator, device=self.device)
                self.position, self.passes = 0, self.passes + 1
            take = min(need, self.n - self.position)
            parts.append(self.order[self.position : self.position + take])
            self.position, need = self.position + take, need - take
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def lead_task(tasks: list[TaskData]) -> TaskData:
    """The task with the most batches per pass (the first of equals): it defines the epoch."""
    return max(tasks, key=lambda t: t.batches_per_pass)  # max keeps the first maximum


def _task_step_loss(model, task: TaskData, idx: torch.Tensor, sums: dict) -> torch.Tensor:
    x, y = task.data.x_train.index_select(0, idx), task.data.y_train.index_select(0, idx)  # as trainer.py
    logits = model(x, task.name)
    loss = F.cross_entropy(logits, y)
    sums["loss"] += loss.detach() * len(idx)
    sums["correct"] += (logits.detach().argmax(1) == y).sum()
    sums["count"] += len(idx)
    return loss


def _run_epoch(model, tasks, streams, optimizer, penalties, callbacks, state, lead_generator) -> dict:
    model.train()
    lead = lead_task(tasks)
    device = lead.data.device
    sums = {t.name: {"loss": torch.zeros((), device=device, dtype=loss_sum_dtype(t.data.x_train)), "count": 0,
                     "correct": torch.zeros((), device=device, dtype=torch.long)} for t in tasks}
    for lead_idx in iterate_batches(len(lead.data.x_train), lead.batch_size, lead_generator, device):
        callbacks.on_step_start(state)
        total = 0.0
        for task in tasks:
            idx = lead_idx if task is lead else next(streams[task.name])
            total = total + task.loss_weight * _task_step_loss(model, task, idx, sums[task.name])
        optimizer_step(total, penalties, optimizer, callbacks, state)
    return {name: (s["loss"].item() / max(s["count"], 1), s["correct"].item() / max(s["count"], 1))
            for name, s in sums.items()}


def _epoch_record(epoch, lr, tasks, train_stats, model, eval_batch_size) -> dict:
    record = {"epoch": epoch, "lr": lr}
    record["train_loss"] = sum(t.loss_weight * train_stats[t.name][0] for t in tasks)
    record["train_acc"] = sum(train_stats[t.name][1] for t in tasks) / len(tasks)
    for t in tasks:
        record[f"train_loss/{t.name}"], record[f"train_acc/{t.name}"] = train_stats[t.name]
    if not math.isfinite(record["train_loss"]):
        record.update(test_loss=float("nan"), test_acc=float("nan"))
        return record
    for t in tasks:
        loss, acc = evaluate(model.task_view(t.name), t.data.x_test, t.data.y_test, eval_batch_size)
        record[f"test_loss/{t.name}"], record[f"test_acc/{t.name}"] = loss, acc
    record["test_loss"] = sum(record[f"test_loss/{t.name}"] for t in tasks) / len(tasks)
    record["test_acc"] = sum(record[f"test_acc/{t.name}"] for t in tasks) / len(tasks)
    return record


@exact_cudnn()
def train_multitask(model: nn.Module, tasks: list[TaskData], cfg, *, seed: int, callbacks=(), penalties=(),
                    on_epoch: Callable[[dict], None] | None = None, run_dir=None,
                    description: str = "") -> TrainResult:
    """Train a multi-task ``model`` (``model(x, task)``, e.g. `MultiTaskNet`) on ``tasks``.

    Args:
        model: on the tasks' device, initialised; ``model.task_view(name)`` gives a
            single-task module for evaluation.
        tasks: at least one `TaskData`, distinct names, all on one device.
        cfg: a `TrainConfig` (epochs, optimizer, lr schedule, L1, eval batch size; the
            per-task batch sizes are in ``tasks``).
        seed: the run's seed (data orders: "data/<task>" generators).
        callbacks, penalties, on_epoch, run_dir, description: as `engine.train`.

    Returns:
        A `TrainResult` ("completed" or "diverged") with the per-epoch records above.

    Raises:
        ValueError: no tasks, repeated names, or tasks on different devices.
    """
    names = [t.name for t in tasks]
    if not tasks or len(set(names)) != len(names) or len({t.data.device for t in tasks}) != 1:
        raise ValueError(f"tasks must be at least one, with distinct names, on one device; got {names}")
    start = time.perf_counter()
    device = tasks[0].data.device
    optimizer = build_optimizer(model.parameters(), cfg.optimizer)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    set_epoch_lr(optimizer, cfg.lr_schedule, 0, cfg.epochs, base_lrs)
    if cfg.l1 > 0:
        weights = weight_parameters(model)
        penalties = [*penalties, lambda: cfg.l1 * sum(w.abs().sum() for w in weights)]
    generators = {t.name: make_generator(seed, f"data/{t.name}", device) for t in tasks}
    lead = lead_task(tasks)
    check_batchnorm_batches(model, len(lead.data.x_train), lead.batch_size)  # the others cycle full batches
    streams = {t.name: CyclingBatches(len(t.data.x_train), t.batch_size, generators[t.name], device)
               for t in tasks if t is not lead}
    state = TrainState(model, optimizer, cfg.epochs, lead.batches_per_pass, seed, device, run_dir)
    cbs = CallbackList(callbacks)
    cbs.on_train_start(state)
    result = TrainResult(status="completed")
    bar = tqdm(range(cfg.epochs), desc=description or "multitask", leave=False, disable=not cfg.progress or None)
    for epoch in bar:
        lr = optimizer.param_groups[0]["lr"]
        stats = _run_epoch(model, tasks, streams, optimizer, penalties, cbs, state, generators[lead.name])
        set_epoch_lr(optimizer, cfg.lr_schedule, epoch + 1, cfg.epochs, base_lrs)
        state.epoch = epoch + 1
        record = _epoch_record(epoch + 1, lr, tasks, stats, model, cfg.eval_batch_size)
        if diverged(record):
            mark_diverged(record, result)
        else:
            record.update(cbs.on_epoch_end(state))
        if record_epoch(record, result, start, on_epoch, bar, description):
            break
    cbs.on_train_end(state)
    result.wall_time_s = time.perf_counter() - start
    return result
