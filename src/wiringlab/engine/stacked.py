"""Train M members of one architecture at once: batched matmuls, one optimizer pass.

Evidence: `bench/stacked.py` times M members stacked against the same members trained
one after another, in one run. Members differ in seed (init and data order) and in
values: learning rate, weight decay, L1, kernel and mask buffers.
Each member keeps its own data order (its own generator), its own callbacks (which see
a `TrainState` whose model is the member module, aliasing the stack), its own history
and status: a diverged member is recorded and stops logging; the others go on.

Per-member losses are summed before backward; the gradient of member m depends only on
loss m, so members cannot leak into each other.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..seeding import make_generator
from .callbacks import CallbackList, TrainState
from .optim import lr_factor
from .precision import autocast, compiled, exact_cudnn
from .stacked_optim import StackedOptimizer
from .stacking import StackedMembers
from .tensors import DeviceData
from .trainer import (TrainResult, check_batchnorm_batches, diverged, keep_epoch_record, loss_input, loss_sum_dtype,
                      mark_diverged)

__all__ = ["train_stacked", "stack_compatible"]

_SHARED_TRAIN_KEYS = ("epochs", "batch_size", "eval_batch_size", "lr_schedule", "precision", "compile")


def stack_compatible(cfgs) -> str | None:
    """None if these `TrainConfig`s can train as one stack, else why not."""
    first = cfgs[0]
    for key in _SHARED_TRAIN_KEYS:
        if any(getattr(c, key) != getattr(first, key) for c in cfgs):
            return f"train.{key} differs"
    if any(c.optimizer.name != first.optimizer.name for c in cfgs):
        return "train.optimizer.name differs"
    return None


def _l1_weights(stack: StackedMembers) -> list[str]:
    from torch import nn

    names = []
    for mod_name, module in stack.members[0].named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            names.append(f"{mod_name}.weight" if mod_name else "weight")
    return names


def _penalty(stack, l1: torch.Tensor | None, penalties):
    """Sum over members of L1 (`l1`: (M,) coefficients on the device, None when all are 0)
    and each member's own penalties, evaluated on differentiable slices of the stacked parameters."""
    total = 0.0
    if l1 is not None:
        for name in _l1_weights(stack):
            w = stack.params[name]
            total = total + (l1.view(-1, *[1] * (w.dim() - 1)) * w.abs()).sum()
    for m, member_penalties in enumerate(penalties):
        if member_penalties:
            views = {n: p[m] for n, p in stack.params.items()}
            total = total + functional_call(_PenaltyCaller(stack.members[m], member_penalties),
                                            {f"model.{n}": v for n, v in views.items()}, ())
    return total


class _PenaltyCaller(torch.nn.Module):
    def __init__(self, model, penalties):
        super().__init__()
        self.model, self.penalties = model, penalties

    def forward(self):
        return sum(p() for p in self.penalties)


@torch.no_grad()
def _evaluate(stack: StackedMembers, forward, x, y, batch_size, precision):
    stack.train(False)
    M = len(stack)
    loss_sum = torch.zeros(M, device=x.device, dtype=loss_sum_dtype(x))
    correct = torch.zeros(M, device=x.device, dtype=torch.long)
    for s in range(0, len(x), batch_size):
        with autocast(precision, x.device):
            logits = forward(x[s : s + batch_size], shared_input=True)  # (M, b, C)
        target = y[s : s + batch_size]
        losses = F.cross_entropy(loss_input(logits.flatten(0, 1)), target.repeat(M), reduction="none")  # (M·b,)
        loss_sum += losses.view(M, -1).sum(1)
        correct += (logits.argmax(-1) == target).sum(1)
    stack.train(True)
    n = max(len(x), 1)
    return (loss_sum / n).tolist(), (correct.double() / n).tolist()


def _probe_loss(stack, data, precision, l1, penalties) -> torch.Tensor:
    """The training loss's shape on one training input, for the gradients' layouts only
    (the penalties too: an L1 term changes the layout in which a weight's summed gradient
    arrives). Eval mode, and nothing drawn from any generator."""
    training = stack.template.training
    stack.train(False)
    try:
        with autocast(precision, data.device):
            return loss_input(stack.forward(data.x_train[:1], shared_input=True)).sum() + _penalty(stack, l1, penalties)
    finally:
        stack.train(training)


def _run_epoch(stack, forward, data, cfg, opt, l1, penalties, cbs, states, gens):
    M, n = len(stack), len(data.x_train)
    orders = torch.stack([torch.randperm(n, generator=g, device=data.device) for g in gens])  # (M, N)
    loss_sum = torch.zeros(M, device=data.device, dtype=loss_sum_dtype(data.x_train))
    correct = torch.zeros(M, device=data.device, dtype=torch.long)
    for start in range(0, n, cfg.batch_size):
        idx = orders[:, start : start + cfg.batch_size]  # (M, B)
        x, y = data.x_train[idx], data.y_train[idx]  # (M, B, ...), (M, B)
        for cb, st in zip(cbs, states):
            cb.on_step_start(st)
        stack.resync()
        with autocast(cfg.precision, data.device):
            logits = forward(x)  # (M, B, C)
        losses = F.cross_entropy(loss_input(logits.flatten(0, 1)), y.flatten(), reduction="none").view(M, -1).mean(1)
        total = losses.sum() + _penalty(stack, l1, penalties)
        opt.zero_grad()
        total.backward()
        opt.step()
        for cb, st in zip(cbs, states):
            st.step += 1
            cb.on_step_end(st)
        loss_sum += losses.detach() * idx.shape[1]
        correct += (logits.detach().argmax(-1) == y).sum(1)
    return (loss_sum / n).tolist(), (correct.double() / n).tolist()


def _record_member_epoch(result, cb, state, epoch, metrics, start, on_epoch) -> None:
    """Append one member's epoch record; a non-finite train or test loss marks it diverged
    (`trainer.diverged`: its test metrics are NaN and its callbacks are not asked for
    metrics any more)."""
    lr, train_loss, train_acc, test_loss, test_acc = metrics
    state.epoch = epoch
    record = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
              "test_loss": test_loss, "test_acc": test_acc}
    if diverged(record):
        mark_diverged(record, result)
    else:
        record.update(cb.on_epoch_end(state))
    keep_epoch_record(record, result, start, on_epoch)


def _member_states(stack, opt, data, cfg, seeds, run_dirs) -> list[TrainState]:
    """One `TrainState` per member: its module (aliasing the stack) and its optimizer view."""
    steps = math.ceil(len(data.x_train) / cfg.batch_size)
    return [TrainState(member, opt.member_view(m, stack.member_parameters(m)), cfg.epochs, steps,
                       seeds[m], data.device, run_dirs[m]) for m, member in enumerate(stack.members)]


@exact_cudnn()
def train_stacked(
    models,
    data: DeviceData,
    cfgs,
    *,
    seeds,
    callbacks=None,
    penalties=None,
    on_epoch=None,
    run_dirs=None,
) -> list[TrainResult]:
    """Train `models` (same structure) together; member m follows `cfgs[m]`, `seeds[m]`.

    Args:
        models: M initialised member modules on `data.device`.
        cfgs: M `TrainConfig`s that agree on epochs, batch sizes, lr schedule and
            optimizer type (`stack_compatible`); lr, weight decay, momentum, L1 may differ.
        seeds: M run seeds (data order per member).
        callbacks, penalties: per member, lists as for `train`.
        on_epoch: per member, called with that member's epoch record.
        run_dirs: per member, passed to its callbacks.

    Returns:
        One `TrainResult` per member, as `train` would have returned.

    Raises:
        ValueError: the configs or models cannot be stacked; BatchNorm with a last batch
            of one sample (`trainer.check_batchnorm_batches`).
    """
    reason = stack_compatible(cfgs)
    if reason:
        raise ValueError(f"cannot stack: {reason}")
    M, cfg, start = len(models), cfgs[0], time.perf_counter()
    check_batchnorm_batches(models[0], len(data.x_train), cfg.batch_size)
    stack = StackedMembers(models)
    callbacks = callbacks or [[] for _ in range(M)]
    penalties = penalties or [[] for _ in range(M)]
    # built once: a host-to-device copy per step would synchronise with the GPU every step
    l1 = torch.tensor([c.l1 for c in cfgs], dtype=torch.float32, device=data.device) \
        if any(c.l1 > 0 for c in cfgs) else None
    drop_grads = stack.adopt_gradient_layouts(lambda: _probe_loss(stack, data, cfg.precision, l1, penalties))
    forward = compiled(stack.forward, cfg.compile)
    opt = StackedOptimizer(list(stack.params.values()), cfg.optimizer.name, [c.optimizer for c in cfgs],
                           drop_grads=list(drop_grads.values()))
    gens = [make_generator(s, "data", data.device) for s in seeds]
    states = _member_states(stack, opt, data, cfg, seeds, run_dirs or [None] * M)
    cbs = [CallbackList(c) for c in callbacks]
    for cb, st in zip(cbs, states):
        cb.on_train_start(st)
    results = [TrainResult(status="completed", train_step="stacked") for _ in range(M)]
    for epoch in range(cfg.epochs):
        lrs = list(opt.lr)
        train_metrics = _run_epoch(stack, forward, data, cfg, opt, l1, penalties, cbs, states, gens)
        opt.set_lr_factors([lr_factor(cfg.lr_schedule, epoch + 1, cfg.epochs)] * M)
        test_metrics = _evaluate(stack, forward, data.x_test, data.y_test, cfg.eval_batch_size, cfg.precision)
        for m in range(M):
            if results[m].status != "diverged":
                metrics = (lrs[m], *(values[m] for values in (*train_metrics, *test_metrics)))
                _record_member_epoch(results[m], cbs[m], states[m], epoch + 1, metrics, start,
                                     on_epoch[m] if on_epoch is not None else None)
        if all(r.status == "diverged" for r in results):
            break
    stack.unstack()
    for cb, st in zip(cbs, states):
        cb.on_train_end(st)
    for r in results:
        r.wall_time_s = time.perf_counter() - start
    return results
