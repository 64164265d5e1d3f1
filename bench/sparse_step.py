"""Training-step time of a 3072-1024-512-10 SET MLP with wiringlab's layers: compressed
(`CSRSparseLinear`) against dense (`nn.Linear`) and masked dense (`SparseLinear`), at 90 /
95 / 99% sparsity of the hidden layers (output layer dense); and the cost of one SET
prune-and-regrow of every sparse layer as a share of an epoch.

What it measures: forward + cross-entropy + backward + SGD-momentum step per batch of 128
(CIFAR-10 shaped inputs), median over steps, variants alternating in rounds in one
process. An epoch is 50,000 / 128 = 391 steps (CIFAR-10's training set).
Targets (issue 8, CPU): CSR at least 1.5x / 3x / 5x faster than dense at 90 / 95 / 99%;
prune-and-regrow under 2% of an epoch.

Variants: dense, masked dense, CSR with torch's kernels (`csr_kernel: torch`) and, when the
numba extra is installed, CSR with wiringlab's numba kernels (`csr_kernel: numba`).

Run: python bench/sparse_step.py [--steps 20] [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from wiringlab.engine.evolution import evolve_layer_
from wiringlab.experiment.config import SETConfig
from wiringlab.layers import CSRSparseLinear, SparseLinear

SIZES = [3072, 1024, 512, 10]
BATCH = 128
STEPS_PER_EPOCH = 50_000 // BATCH


def _model(kind: str, sparsity: float, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)  # the same masks and weights for the masked and CSR variants
    layers = []
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        if kind == "dense" or i == len(SIZES) - 2:
            layers.append(nn.Linear(n_in, n_out))
        else:
            options = {"csr_kernel": kind.removeprefix("csr-")} if kind.startswith("csr") else {}
            cls = CSRSparseLinear if kind.startswith("csr") else SparseLinear
            layer = cls(n_in, n_out, density=1.0 - sparsity, **options)
            layer.reset_parameters(torch.Generator().manual_seed(seed + i))
            layers.append(layer)
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _trainer(model, x, y):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=True)

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step, optimizer


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _evolution_ms(model, optimizer, repeats: int) -> float:
    layers = [m for m in model if isinstance(m, SparseLinear)]
    config, g = SETConfig(zeta=0.3), torch.Generator().manual_seed(0)
    return _median_ms(lambda: [evolve_layer_(layer, optimizer, 0.3, config, g) for layer in layers], repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(BATCH, SIZES[0], generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, MLP {'-'.join(map(str, SIZES))}, "
          f"batch {BATCH}, SGD momentum (fused); epoch = {STEPS_PER_EPOCH} steps")
    kinds = ["dense", "masked", "csr-torch"] + (["csr-numba"] if importlib.util.find_spec("numba") else [])
    print("csr-torch: torch's sparse kernels (MKL); csr-numba: wiringlab's numba kernels"
          + ("" if "csr-numba" in kinds else " (not installed: pip install 'wiringlab[numba]')"))
    print("sparsity | variant   |  step ms | vs dense | vs masked | SET step / epoch")
    for sparsity in (0.9, 0.95, 0.99):
        models = {kind: _model(kind, sparsity, seed=1) for kind in kinds}
        trainers = {kind: _trainer(model, x, y) for kind, model in models.items()}
        times = {kind: [] for kind in models}
        for _ in range(args.rounds):
            for kind, (step, _) in trainers.items():
                times[kind].append(_median_ms(step, args.steps))
        ms = {kind: statistics.median(t) for kind, t in times.items()}
        for kind in kinds:
            share = "" if kind == "dense" else \
                f"{_evolution_ms(models[kind], trainers[kind][1], 3) / (STEPS_PER_EPOCH * ms[kind]):.2%}"
            print(f"{sparsity:8.2f} | {kind:9s} | {ms[kind]:8.2f} | {ms['dense'] / ms[kind]:7.2f}x | "
                  f"{ms['masked'] / ms[kind]:8.2f}x | {share}")


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
    main()
