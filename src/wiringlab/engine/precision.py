"""Opt-in speed settings of a run: bf16 autocast and `torch.compile`.

Both change the numbers a run produces, so neither is ever on by default in an
accuracy experiment; both are config keys (`train.precision`, `train.compile`), so
they are part of the run id, `config.yaml` and the provenance in `summary.json`.

* `precision: bf16` runs forward passes under `torch.autocast(dtype=bfloat16)`: matmuls
  in bf16, weights, gradients and optimizer state stay fp32; the loss is computed on
  fp32 logits. CSR layers compute in their weights' dtype (torch's CSR kernels have no
  bf16 on CPU), so their inputs are cast back to fp32.
* `compile: default | reduce-overhead | max-autotune` wraps the model (or a stack's
  vmapped forward) in `torch.compile` with that mode. "reduce-overhead" uses CUDA
  graphs: worth it on a GPU, where small MLP steps are launch-bound. The first epoch
  pays the compilation (tens of seconds on a 2-core CPU).

Not opt-in: every training loop runs inside `exact_cudnn()`. cuDNN's defaults (torch
2.13) compute fp32 convolutions in TF32 on Ampere and later GPUs and may choose
nondeterministic backward algorithms, so a LeNet run on a GPU would neither be the fp32
it records nor repeat with its seed.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

__all__ = ["autocast", "compiled", "exact_cudnn", "PRECISIONS", "COMPILE_MODES"]

PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


def autocast(precision: str, device: torch.device):
    """A context for forward passes: bf16 autocast on `device`, or nothing for fp32.

    Raises:
        ValueError: unknown precision.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")


def compiled(fn: Callable, mode: str) -> Callable:
    """`fn` (a module or function) compiled with `torch.compile(mode=mode)`; `fn` itself
    when mode is "off".

    Raises:
        ValueError: unknown mode.
    """
    if mode == "off":
        return fn
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; allowed: {', '.join(COMPILE_MODES)}")
    return torch.compile(fn, mode=mode)


@contextlib.contextmanager
def exact_cudnn():
    """cuDNN in full fp32 with deterministic algorithms (no autotuning) inside; the previous
    flags are restored on exit. Also usable as a decorator. No effect on CPU computations.

    Pitfall: torch has two APIs for TF32 and raises when code reads the legacy flag
    (`cudnn.allow_tf32`) after the newer per-op `fp32_precision` settings were used. So
    this speaks the API the process already uses: the legacy flag while it is readable,
    the per-op settings otherwise.
    """
    cudnn = torch.backends.cudnn
    saved = (cudnn.benchmark, cudnn.deterministic)
    try:
        legacy = cudnn.allow_tf32
    except RuntimeError:  # the newer API is in use
        legacy, precisions = None, (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision)
    try:
        cudnn.benchmark, cudnn.deterministic = False, True
        if legacy is None:
            cudnn.conv.fp32_precision = cudnn.rnn.fp32_precision = "ieee"
        else:
            cudnn.allow_tf32 = False
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved
        if legacy is None:
            cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = precisions
        else:
            cudnn.allow_tf32 = legacy
