"""SparseLinear at scale: a 10,000 x 10,000 layer at 99% sparsity, one training step and one
SET evolution per regrowth rule, with the memory each part adds.

What it measures (one process, CPU, Linux): each part's peak resident memory above the
resident memory before it (the peak, VmHWM, is reset before each part) and wall time of
building the layer (mask drawn by rejection sampling), of one SGD-momentum step on a batch,
and of one evolution with `random` regrowth, with `distance` regrowth (its probability
matrix built first, as a run does once), then with `gradient` regrowth, which needs the
dense gradient gᵀx (one extra out x in tensor). `--layout masked` is `SparseLinear` (dense
weight and mask), `--layout csr` is `CSRSparseLinear` (what the layer factory builds at >=
90% sparsity): only the active values. The baseline in the same run is the size of one dense
out x in float32 tensor, so each number reads as "how many dense matrices this part
allocated".

Run: python bench/sparse_scale.py [--layout masked|csr] [--size 10000] [--density 0.01] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from wiringlab.engine.evolution import _DenseGradientCapture, distance_probabilities, evolve_layer_
from wiringlab.experiment.config import DistanceRegrowConfig, SETConfig
from wiringlab.layers import CSRSparseLinear, SparseLinear


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024  # kB


def _rss_mb() -> float:
    """Resident memory now, after resetting the peak (Linux: 5 > clear_refs resets VmHWM),
    so that each part's peak is its own and not an earlier part's."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mb("VmRSS")


def _report(what: str, start: float, rss_before: float, dense_mb: float) -> None:
    grown = _status_mb("VmHWM") - rss_before
    print(f"{what:<36} {time.perf_counter() - start:7.2f} s   peak RSS +{grown:7.0f} MB "
          f"({grown / dense_mb:4.2f} dense matrices)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--layout", choices=["masked", "csr"], default="masked")
    args = parser.parse_args()
    n, g = args.size, torch.Generator().manual_seed(0)
    dense_mb = n * n * 4 / 2**20
    print(f"{args.layout} layer {n} x {n}, density {args.density}, one dense float32 matrix = {dense_mb:.0f} MB")

    rss, t = _rss_mb(), time.perf_counter()
    layer = (CSRSparseLinear if args.layout == "csr" else SparseLinear)(n, n, density=args.density)
    layer.reset_parameters(generator=g)
    _report("build (weight + mask + init)", t, rss, dense_mb)
    print(f"  weight: {tuple(layer.weight.shape)}, {layer.weight.numel() * 4 / 2**20:.0f} MB")

    optimizer = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, n, generator=g)
    rss, t = _rss_mb(), time.perf_counter()
    capture = _DenseGradientCapture([layer])
    layer(x).square().mean().backward()
    optimizer.step()
    capture.remove()
    _report("step (+ grad, momentum, dense grad)", t, rss, dense_mb)

    rss, t = _rss_mb(), time.perf_counter()
    evolve_layer_(layer, optimizer, 0.3, SETConfig(regrow="random"), g)
    _report("evolve, regrow=random", t, rss, dense_mb)
    rss, t = _rss_mb(), time.perf_counter()
    (probability,) = distance_probabilities([layer], DistanceRegrowConfig(geometry="line"))
    _report("distance probabilities (once a run)", t, rss, dense_mb)
    rss, t = _rss_mb(), time.perf_counter()
    evolve_layer_(layer, optimizer, 0.3, SETConfig(regrow="distance"), g, probability=probability)
    _report("evolve, regrow=distance", t, rss, dense_mb)
    del probability
    rss, t = _rss_mb(), time.perf_counter()
    evolve_layer_(layer, optimizer, 0.3, SETConfig(regrow="gradient"), g, dense_grad=capture.grads[id(layer)])
    _report("evolve, regrow=gradient", t, rss, dense_mb)
    assert layer.num_active == round(args.density * n * n)


if __name__ == "__main__":
    main()
