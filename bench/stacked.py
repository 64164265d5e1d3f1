"""Stacked members against one model at a time: M seeds of an MLP in one vmapped pass.

What it measures: the wall time of one epoch of M members trained as one stack
(`engine.stacked.train_stacked`) against M times the epoch of one model trained alone
(`engine.train`), same data, same process, alternating rounds. Target (issue 8): on
CPU, M = 8 members take at most 0.95 × 8 single-model epochs; on a GPU, M = 16 take at
most 3 × one model's epoch (small models are launch-bound there). One model is timed
twice: with its default step (for this plain MLP the fused MLP step, engine/fused_mlp.py)
and with `train.step: autograd`, the step the stack's own (vmapped autograd) matches.

`--workers N` (CPU) adds a line: the M members as N stacks in N one-thread processes,
timed together, which is how `wiringlab run --workers N` trains M seeds of a config
(`grouping.spread_groups`); against the same M × one model (all threads, this process).

Run: python bench/stacked.py [--members 8] [--samples 6400] [--hidden 1000 1000] [--device cpu] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wiringlab.engine import DeviceData, train
from wiringlab.engine.stacked import train_stacked
from wiringlab.experiment.config import MLPConfig, TrainConfig
from wiringlab.init import init_parameters_
from wiringlab.models import build_model
from wiringlab.seeding import make_generator


def _models(count, hidden, device):
    return [init_parameters_(build_model(MLPConfig(hidden=hidden), (1, 28, 28), 10, device=device),
                             make_generator(s, "init", device)) for s in range(count)]


def _stack_epoch(members: int, hidden: list[int], samples: int) -> float:
    """One epoch of a stack of `members` on CPU, in a (worker) process; returns seconds."""
    data, cfg = _data_and_config(samples, torch.device("cpu"))
    models = _models(members, hidden, torch.device("cpu"))
    t = time.perf_counter()
    train_stacked(models, data, [cfg] * members, seeds=list(range(members)))
    return time.perf_counter() - t


def _data_and_config(samples: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 1, 28, 28, generator=g).to(device)
    y = torch.randint(0, 10, (samples,), generator=g).to(device)
    data = DeviceData(x, y, x[:256], y[:256], (1, 28, 28), 10)
    return data, TrainConfig(epochs=1, batch_size=128, progress=False, optimizer={"name": "sgd", "lr": 0.01})


def _pooled_epoch(pool, workers: int, members: int, hidden: list[int], samples: int) -> float:
    """Epoch time of `members` split into `workers` stacks trained at once, one per process:
    the slowest worker's own timing (it excludes each worker's data and model set-up, as
    the in-process figures do)."""
    sizes = [members // workers + (i < members % workers) for i in range(workers)]
    return max(pool.map(_stack_epoch, sizes, [hidden] * workers, [samples] * workers))


def _alone_epoch(hidden, data, cfg, device) -> tuple[float, str]:
    """Seconds of one epoch of one model trained alone (`engine.train`), and its `train_step`."""
    model = _models(1, hidden, device)[0]
    _sync(device)
    t = time.perf_counter()
    result = train(model, data, cfg, seed=0)
    _sync(device)
    return time.perf_counter() - t, result.train_step


def _one_thread() -> None:
    torch.set_num_threads(1)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--samples", type=int, default=6400)
    parser.add_argument("--hidden", type=int, nargs="+", default=[1000, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=0, help="CPU: also time M members as N one-thread stacks")
    args = parser.parse_args()
    device = torch.device(args.device)
    data, cfg = _data_and_config(args.samples, device)
    M = args.members
    pool = _start_pool(args.workers) if args.workers and device.type == "cpu" else None
    alone, alone_autograd, stacked, pooled = [], [], [], []
    cfg_autograd = cfg.model_copy(update={"step": "autograd"})
    for r in range(args.rounds + 1):  # round 0 warms up
        t_alone, step_name = _alone_epoch(args.hidden, data, cfg, device)
        t_alone_autograd, _ = _alone_epoch(args.hidden, data, cfg_autograd, device)
        models = _models(M, args.hidden, device)
        _sync(device)  # the members' initialisation is not part of the stacked epoch
        t = time.perf_counter()
        train_stacked(models, data, [cfg] * M, seeds=list(range(M)))
        _sync(device)
        t_stacked = time.perf_counter() - t
        t_pooled = _pooled_epoch(pool, args.workers, M, args.hidden, args.samples) if pool else None
        if r:
            alone.append(t_alone)
            alone_autograd.append(t_alone_autograd)
            stacked.append(t_stacked)
            pooled.append(t_pooled)
    if pool:
        pool.shutdown()
    a, s, g = statistics.median(alone), statistics.median(stacked), statistics.median(alone_autograd)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"MLP 784-{'-'.join(map(str, args.hidden))}-10, batch 128, {args.samples} samples/epoch")
    print(f"one model epoch: {a:.3f} s ({step_name});"
          f" with train.step autograd: {g:.3f} s; {M} stacked members epoch: {s:.3f} s (median of {args.rounds})")
    print(f"stacked / ({M} x one model) = {s / (M * a):.3f}   (target: <= 0.95 on CPU)")
    print(f"stacked / ({M} x one model, train.step autograd) = {s / (M * g):.3f}")
    print(f"stacked / one model = {s / a:.2f}x   (GPU target for M=16: <= 3)")
    if pool:
        p = statistics.median(pooled)
        print(f"{M} members as {args.workers} one-thread stacks in {args.workers} processes (--workers "
              f"{args.workers}): {p:.3f} s; / ({M} x one model) = {p / (M * a):.3f}")


def _start_pool(workers: int):
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_one_thread)


if __name__ == "__main__":
    main()
