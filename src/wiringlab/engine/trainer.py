"""The training loop: one model, data on its device, callbacks at the boundaries.

Evidence for the shape: the loop keeps running sums of loss and correct predictions
as device tensors and reads them once per epoch, so a step never waits on the device;
`bench/throughput.py` measures it against the per-sample DataLoader loop of the
reference write-ups.

A NaN or infinite training loss ends the run with status "diverged"; the epochs
before it are kept. The check runs once per epoch (and that epoch is recorded with
its non-finite loss), so divergence costs at most one wasted epoch, never a crash.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..layers import SeededDropout
from ..seeding import make_generator
from .callbacks import CallbackList, TrainState
from .fused_mlp import FusedMLPStep, fused_mlp_layers, fused_step_blocker
from .optim import build_optimizer, set_epoch_lr, weight_parameters
from .precision import autocast, compiled, exact_cudnn
from .tensors import DeviceData, iterate_batches

__all__ = ["TrainResult", "train", "evaluate", "optimizer_step", "check_batchnorm_batches", "diverged", "mark_diverged",
           "keep_epoch_record", "record_epoch", "finish_step", "loss_input"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    status: str  # "completed" | "diverged"
    history: list[dict] = field(default_factory=list)  # one record per epoch
    wall_time_s: float = 0.0
    train_step: str = "autograd"  # how steps were computed (engine/fused_mlp.py), for the provenance

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
             forward: Callable | None = None, precision: str = "fp32") -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on (x, y), in eval mode.

    Args:
        forward: what computes the logits (a compiled `model`); default `model`.
        precision: "fp32", or "bf16" for autocast (`precision.autocast`).
    """
    was_training = model.training
    model.eval()
    forward = model if forward is None else forward
    loss_sum = torch.zeros((), device=x.device, dtype=loss_sum_dtype(x))
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), batch_size):
        with autocast(precision, x.device):
            logits = forward(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss_sum += F.cross_entropy(loss_input(logits), target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    model.train(was_training)
    n = max(len(x), 1)
    return loss_sum.item() / n, correct.item() / n


def check_batchnorm_batches(model: nn.Module, n_train: int, batch_size: int) -> None:
    """A model with BatchNorm1d cannot train on a batch of one sample (torch raises in the
    middle of the first epoch); say so before training, with the fix. BatchNorm2d takes one
    image: its statistics run over the image's positions too.

    Raises:
        ValueError: `model` has BatchNorm1d and some training batch would hold one sample
            (batch_size 1, one training sample, or a last batch of 1).
    """
    if not any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):  # 2-D/3-D ones also average over space
        return
    if min(batch_size, n_train) == 1:
        raise ValueError(f"BatchNorm needs at least 2 samples per training batch, but train.batch_size is "
                         f"{batch_size} and data.n_train {n_train}: raise both to at least 2")
    if n_train % batch_size == 1:
        raise ValueError(f"BatchNorm needs at least 2 samples per training batch, but {n_train} training samples "
                         f"at batch_size {batch_size} leave a last batch of 1 sample: change train.batch_size "
                         "or data.n_train")


def _l1_penalty(model: nn.Module, coefficient: float) -> Callable[[], torch.Tensor] | None:
    if coefficient <= 0:
        return None
    weights = weight_parameters(model)
    return lambda: coefficient * sum(w.abs().sum() for w in weights)


def _assign_dropout_generators(model: nn.Module, seed: int, device: torch.device) -> None:
    for index, module in enumerate(m for m in model.modules() if isinstance(m, SeededDropout)):
        module.generator = make_generator(seed, f"dropout{index}", device)


def optimizer_step(loss: torch.Tensor, penalties, optimizer, callbacks, state) -> None:
    """One update: `loss` plus every penalty, backward, optimizer step, then the step
    counter and the callbacks' `on_step_end`. Shared by the single-task and multi-task loops."""
    total = loss
    for penalty in penalties:
        total = total + penalty()
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    finish_step(callbacks, state)


def finish_step(callbacks, state) -> None:
    """Count the step, then the callbacks' `on_step_end`."""
    state.step += 1
    callbacks.on_step_end(state)


def loss_sum_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a run's batch losses are summed in, that of its loss (`loss_input`): float64
    for float64 inputs, else float32; a float64 run's loss history keeps float64 precision."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def loss_input(logits: torch.Tensor) -> torch.Tensor:
    """Logits as cross-entropy takes them: float32 from bf16 autocast; float64 stays float64
    (a float64 model's loss gradient would otherwise carry float32 rounding)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def diverged(record: dict) -> bool:
    """Whether an epoch's record ends its run: a non-finite train loss, or a non-finite
    test loss (weights that blew up in the epoch's last step: the train loss was taken
    before it, and argmax of NaN logits would still give a finite, meaningless accuracy)."""
    return not (math.isfinite(record["train_loss"]) and math.isfinite(record.get("test_loss", 0.0)))


def mark_diverged(record: dict, result: TrainResult) -> None:
    """Give a diverged epoch NaN test metrics and its run the status "diverged"."""
    record.update(test_loss=float("nan"), test_acc=float("nan"))
    result.status = "diverged"


def keep_epoch_record(record: dict, result: TrainResult, start: float, on_epoch) -> None:
    """Time-stamp an epoch's `record` (seconds since `start`), keep it in `result` and
    stream it (`on_epoch`). Shared by the single-model, multi-task and stacked loops."""
    record["time_s"] = time.perf_counter() - start
    result.history.append(record)
    if on_epoch is not None:
        on_epoch(record)


def record_epoch(record: dict, result: TrainResult, start: float, on_epoch, bar, description: str) -> bool:
    """`keep_epoch_record`, then show the record on the bar. Returns True when the run has
    diverged and training must stop."""
    keep_epoch_record(record, result, start, on_epoch)
    bar.set_postfix(test_acc=f"{record['test_acc']:.4f}")
    if result.status != "diverged":
        return False
    log.warning("%s diverged at epoch %d (train loss %s)", description, record["epoch"], record["train_loss"])
    return True


def _step_function(model, forward, cfg, optimizer, penalties, callbacks, state):
    """What trains on one batch: `step(x, y) -> (loss, logits)`, both detached, after the
    update and `on_step_end`; and a function naming how the steps were computed (for the
    provenance). A plain ReLU MLP gets the hand-derived step (`fused_mlp`)."""
    blocker = fused_step_blocker(cfg, penalties, optimizer)
    layers = fused_mlp_layers(model) if blocker is None else blocker
    if not isinstance(layers, str):
        fused = FusedMLPStep(layers, optimizer, callbacks)

        def step(x, y):
            loss, logits = fused(x, y)
            finish_step(callbacks, state)
            return loss, logits

        return step, lambda: " / ".join(sorted(fused.modes)) or "fused-mlp"
    log.debug("autograd step: %s", layers)

    def step(x, y):
        with autocast(cfg.precision, x.device):
            logits = forward(x)
        loss = F.cross_entropy(loss_input(logits), y)
        optimizer_step(loss, penalties, optimizer, callbacks, state)
        return loss.detach(), logits.detach()

    return step, lambda: "autograd"


def _run_epoch(model, step, data, cfg, callbacks, state, generator):
    model.train()
    loss_sum = torch.zeros((), device=data.device, dtype=loss_sum_dtype(data.x_train))
    correct = torch.zeros((), device=data.device, dtype=torch.long)
    for idx in iterate_batches(len(data.x_train), cfg.batch_size, generator, data.device):
        # index_select, not x_train[idx]: the same rows, gathered ~5x faster on CPU (24 against
        # 120 µs for 128 MNIST images out of 12,800; 1% of a 784-1000-1000-10 step)
        x, y = data.x_train.index_select(0, idx), data.y_train.index_select(0, idx)
        callbacks.on_step_start(state)
        loss, logits = step(x, y)
        loss_sum += loss * len(idx)
        correct += (logits.argmax(1) == y).sum()
    n = len(data.x_train)
    return loss_sum.item() / n, correct.item() / n


@exact_cudnn()
def train(
    model: nn.Module,
    data: DeviceData,
    cfg,
    *,
    seed: int,
    callbacks=(),
    penalties=(),
    on_epoch: Callable[[dict], None] | None = None,
    run_dir=None,
    description: str = "",
) -> TrainResult:
    """Train `model` on `data` as `cfg` (a `TrainConfig`) says.

    Args:
        model: a module already on `data.device`, initialised.
        data: inputs and labels on the training device.
        cfg: epochs, batch size, optimizer, lr schedule, L1 coefficient.
        seed: the run's seed; data order and dropout draw from generators derived from it.
        callbacks: `Callback`s called at step and epoch boundaries.
        penalties: callables returning a scalar tensor added to the loss each step.
        on_epoch: called with each epoch's record as soon as it exists (for streaming to disk).
        run_dir: passed to callbacks through `TrainState.run_dir`.

    Returns:
        A `TrainResult` with status "completed" or "diverged" and the per-epoch history.
        Its train_loss / train_acc are running means over the epoch's batches in training
        mode (dropout on, weights changing), not a separate pass over the training set;
        test_loss / test_acc are an evaluation pass after the epoch.
    """
    check_batchnorm_batches(model, len(data.x_train), cfg.batch_size)
    start = time.perf_counter()
    optimizer = build_optimizer(model.parameters(), cfg.optimizer)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    set_epoch_lr(optimizer, cfg.lr_schedule, 0, cfg.epochs, base_lrs)
    l1 = _l1_penalty(model, cfg.l1)
    penalties = [p for p in (*penalties, l1) if p is not None]
    _assign_dropout_generators(model, seed, data.device)
    data_gen = make_generator(seed, "data", data.device)
    forward = compiled(model, cfg.compile)  # callbacks and analyses keep the plain module
    steps = math.ceil(len(data.x_train) / cfg.batch_size)
    state = TrainState(model, optimizer, cfg.epochs, steps, seed, data.device, run_dir)
    cbs = CallbackList(callbacks)
    cbs.on_train_start(state)
    step, step_kind = _step_function(model, forward, cfg, optimizer, penalties, cbs, state)
    result = TrainResult(status="completed")
    bar = tqdm(range(cfg.epochs), desc=description or "train", leave=False,
               disable=not cfg.progress or None)
    for epoch in bar:
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = _run_epoch(model, step, data, cfg, cbs, state, data_gen)
        set_epoch_lr(optimizer, cfg.lr_schedule, epoch + 1, cfg.epochs, base_lrs)
        state.epoch = epoch + 1
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc}
        if math.isfinite(train_loss):
            record["test_loss"], record["test_acc"] = evaluate(model, data.x_test, data.y_test, cfg.eval_batch_size,
                                                               forward=forward, precision=cfg.precision)
        if diverged(record):
            mark_diverged(record, result)
        else:
            record.update(cbs.on_epoch_end(state))
        if record_epoch(record, result, start, on_epoch, bar, description):
            break
    cbs.on_train_end(state)
    result.train_step = step_kind()
    result.wall_time_s = time.perf_counter() - start
    return result
