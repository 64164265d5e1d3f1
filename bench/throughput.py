"""Training throughput of an MLP 784-1000-1000-10 at batch 128 on MNIST-shaped data.

What it measures: samples/s of wiringlab's engine (whole dataset as one device
tensor, randperm batches, no per-batch sync) against a baseline loop written the way
the reference write-ups train (per-sample Dataset that converts each sample,
DataLoader with shuffle, batch 128, `.item()` per batch), in the same process, in
alternating rounds so that machine noise hits both alike. Also reports each as a
fraction of the machine's measured fp32 matmul peak (best of a 2048² matmul).
The engine trains this plain ReLU MLP with the fused MLP step (engine/fused_mlp.py); the
line "train.step: autograd" times the same engine with autograd's step, in the same rounds.

Third line: the same engine as a sweep runs it with `--workers N` (`grouping.spread_groups`,
`executors.PoolExecutor`): N processes with one thread each, one model each, timed
together; aggregate samples/s. On a 2-core CPU one thread runs these matmuls at ~71% of
the one-thread peak, two threads at ~55% of the two-thread peak.

Run: python bench/throughput.py [--samples 12800] [--rounds 3] [--workers 2] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import measured_matmul_gflops, mlp_step_flops  # noqa: E402

from wiringlab.engine import DeviceData, train  # noqa: E402
from wiringlab.experiment.config import MLPConfig, TrainConfig  # noqa: E402
from wiringlab.init import init_parameters_  # noqa: E402
from wiringlab.models import build_model  # noqa: E402
from wiringlab.seeding import make_generator  # noqa: E402

SIZES = [784, 1000, 1000, 10]
BATCH = 128


class PerSampleDataset(torch.utils.data.Dataset):
    """The reference style: numpy storage, converted to a tensor one sample at a time."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = torch.tensor(self.x[i], dtype=torch.float32).view(-1) / 255.0
        return (x - 0.5) / 0.5, int(self.y[i])


def baseline_epoch(x: np.ndarray, y: np.ndarray) -> float:
    model = nn.Sequential(nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = torch.utils.data.DataLoader(PerSampleDataset(x, y), batch_size=BATCH, shuffle=True)
    start, total = time.perf_counter(), 0.0
    for xb, yb in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        total += loss.item()
    return time.perf_counter() - start


def wiringlab_epoch(x: np.ndarray, y: np.ndarray, step: str = "auto") -> float:
    xt = (torch.from_numpy(x).float() / 255.0 - 0.5) / 0.5
    data = DeviceData(xt, torch.from_numpy(y).long(), xt[:BATCH], torch.from_numpy(y[:BATCH]).long(), (1, 28, 28), 10)
    model = init_parameters_(build_model(MLPConfig(hidden=[1000, 1000]), (1, 28, 28), 10), make_generator(0, "init"))
    cfg = TrainConfig(epochs=1, batch_size=BATCH, progress=False, step=step,
                      optimizer={"name": "sgd", "lr": 0.01, "momentum": 0.9})
    return train(model, data, cfg, seed=0).history[-1]["time_s"]


def matmul_bound(x: np.ndarray, y: np.ndarray, peak: float, step: str) -> tuple[float, float]:
    """Profile one engine epoch. Returns the matmuls' share of its time, and the fraction of
    `peak` that a step made of nothing but those matmuls, at the speed they ran in the
    step, would reach: the ceiling of what the engine can do around the BLAS."""
    from torch.profiler import ProfilerActivity, profile

    wiringlab_epoch(x, y, step)  # the first epoch of a step allocates its buffers
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        epoch_s = wiringlab_epoch(x, y, step)
    matmuls = ("aten::mm", "aten::addmm", "aten::addmm_")
    matmul_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in matmuls)
    steps = -(-len(x) // BATCH)
    bound = mlp_step_flops(SIZES, BATCH) * steps / (matmul_us / 1e6) / 1e9 / peak
    return matmul_us / 1e6 / epoch_s, bound


def _one_thread() -> None:
    torch.set_num_threads(1)


def pool_samples_per_s(pool, workers: int, x: np.ndarray, y: np.ndarray) -> float:
    """Aggregate samples/s of `workers` one-thread processes, each training one epoch."""
    start = time.perf_counter()
    list(pool.map(wiringlab_epoch, [x] * workers, [y] * workers))
    return workers * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=12800, help="samples per timed epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="processes of the sweep line (0: skip it)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of this process (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(args.samples, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=args.samples)
    wiringlab_epoch(x[:1024], y[:1024]), baseline_epoch(x[:1024], y[:1024])  # warm-up
    wiringlab_epoch(x[:1024], y[:1024], "autograd")
    ours, base, pooled, peaks, autograd = [], [], [], [], []
    pool = None
    if args.workers:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        pool = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_one_thread)
        pool_samples_per_s(pool, args.workers, x[:1024], y[:1024])  # start and warm the workers
    for _ in range(args.rounds):
        peaks.append(measured_matmul_gflops())
        ours.append(args.samples / wiringlab_epoch(x, y))
        base.append(args.samples / baseline_epoch(x, y))
        autograd.append(args.samples / wiringlab_epoch(x, y, "autograd"))
        if pool is not None:
            pooled.append(pool_samples_per_s(pool, args.workers, x, y))
    if pool is not None:
        pool.shutdown()
    peak = max(peaks)
    step_gflop = mlp_step_flops(SIZES, BATCH) / 1e9
    fraction = lambda sps: sps / BATCH * step_gflop / peak  # noqa: E731
    o, b, a = statistics.median(ours), statistics.median(base), statistics.median(autograd)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, measured fp32 matmul peak {peak:.1f} GFLOP/s")
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, {step_gflop:.3f} GFLOP per step, median of {args.rounds} rounds")
    print(f"baseline (per-sample DataLoader, .item() per batch): {b:9.0f} samples/s  {fraction(b):5.1%} of peak")
    print(f"wiringlab engine                                   : {o:9.0f} samples/s  {fraction(o):5.1%} of peak")
    print(f"ratio wiringlab / baseline: {o / b:.2f}x")
    print(f"wiringlab engine, train.step: autograd         : {a:9.0f} samples/s  {fraction(a):5.1%} of peak"
          f"  ({a / b:.2f}x the baseline)")
    for step in ("auto", "autograd"):
        share, bound = matmul_bound(x[: 40 * BATCH], y[: 40 * BATCH], peak, step)
        print(f"train.step {step}: matmuls {share:.0%} of the engine's epoch (profiled); a step of matmuls alone, at"
              f" their in-step speed, would reach {bound:.1%} of peak")
    if pooled:
        p = statistics.median(pooled)
        print(f"wiringlab sweep, {args.workers} processes x 1 thread  : {p:9.0f} samples/s  {fraction(p):5.1%} of peak"
              f"  ({p / b:.2f}x the baseline)")


if __name__ == "__main__":
    main()
