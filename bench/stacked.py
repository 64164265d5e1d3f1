"""Stacked members against one model at a time: M seeds of an MLP in one vmapped pass.

What it measures: the wall time of one epoch of M members trained as one stack
(`engine.stacked.train_stacked`) against M times the epoch of one model trained alone
(`engine.train`), same data, same process, alternating rounds. Target (issue 8): on
CPU, M = 8 members take at most 0.95 × 8 single-model epochs; on a GPU, M = 16 take at
most 3 × one model's epoch (small models are launch-bound there).

Run: python bench/stacked.py [--members 8] [--samples 6400] [--hidden 1000 1000] [--device cpu]
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
    args = parser.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, 1, 28, 28, generator=g).to(device)
    y = torch.randint(0, 10, (args.samples,), generator=g).to(device)
    data = DeviceData(x, y, x[:256], y[:256], (1, 28, 28), 10)
    cfg = TrainConfig(epochs=1, batch_size=128, progress=False, optimizer={"name": "sgd", "lr": 0.01})
    M = args.members
    alone, stacked = [], []
    for r in range(args.rounds + 1):  # round 0 warms up
        model = _models(1, args.hidden, device)[0]
        _sync(device)
        t = time.perf_counter()
        train(model, data, cfg, seed=0)
        _sync(device)
        t_alone = time.perf_counter() - t
        models = _models(M, args.hidden, device)
        _sync(device)  # the members' initialisation is not part of the stacked epoch
        t = time.perf_counter()
        train_stacked(models, data, [cfg] * M, seeds=list(range(M)))
        _sync(device)
        t_stacked = time.perf_counter() - t
        if r:
            alone.append(t_alone)
            stacked.append(t_stacked)
    a, s = statistics.median(alone), statistics.median(stacked)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"MLP 784-{'-'.join(map(str, args.hidden))}-10, batch 128, {args.samples} samples/epoch")
    print(f"one model epoch: {a:.3f} s; {M} stacked members epoch: {s:.3f} s (median of {args.rounds})")
    print(f"stacked / ({M} x one model) = {s / (M * a):.3f}   (target: <= 0.95 on CPU)")
    print(f"stacked / one model = {s / a:.2f}x   (GPU target for M=16: <= 3)")


if __name__ == "__main__":
    main()
