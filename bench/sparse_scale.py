"""SparseLinear at scale: a 10,000 x 10,000 layer at 99% sparsity, one training step and
one SET evolution per regrowth rule, with the memory each part adds.

What it measures (one process, CPU): resident-memory growth (peak RSS, ru_maxrss) and
wall time of building the layer (mask drawn by rejection sampling), of one SGD-momentum
step on a batch, and of one evolution with `random` regrowth, then with `gradient`
regrowth, which needs the dense gradient gᵀx (one extra out x in tensor). The baseline
in the same run is the size of one dense out x in float32 tensor, so each number reads
as "how many dense matrices this part allocated". `random` should add well under one.

Run: python bench/sparse_scale.py [--size 10000] [--density 0.01] [--batch 64]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from wiringlab.engine.evolution import _DenseGradientCapture, evolve_layer_
from wiringlab.experiment.config import SETConfig
from wiringlab.layers import SparseLinear


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _report(what: str, start: float, rss_before: float, dense_mb: float) -> None:
    grown = _rss_mb() - rss_before
    print(f"{what:<34} {time.perf_counter() - start:7.2f} s   peak RSS +{grown:7.0f} MB "
          f"({grown / dense_mb:4.2f} dense matrices)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    n, g = args.size, torch.Generator().manual_seed(0)
    dense_mb = n * n * 4 / 2**20
    print(f"layer {n} x {n}, density {args.density}, one dense float32 matrix = {dense_mb:.0f} MB")

    rss, t = _rss_mb(), time.perf_counter()
    layer = SparseLinear(n, n, density=args.density)
    layer.reset_parameters(generator=g)
    _report("build (weight + mask + init)", t, rss, dense_mb)

    optimizer = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, n, generator=g)
    rss, t = _rss_mb(), time.perf_counter()
    capture = _DenseGradientCapture([layer])
    layer(x).square().mean().backward()
    optimizer.step()
    capture.remove()
    _report("step (+ grad, momentum, dense grad)", t, rss, dense_mb)

    for rule, dense_grad in (("random", None), ("gradient", capture.grads[id(layer)])):
        rss, t = _rss_mb(), time.perf_counter()
        moved = evolve_layer_(layer, optimizer, 0.3, SETConfig(regrow=rule), g, dense_grad=dense_grad)
        _report(f"evolve, regrow={rule} ({moved} moved)", t, rss, dense_mb)
    assert layer.num_active == round(args.density * n * n)


if __name__ == "__main__":
    main()
