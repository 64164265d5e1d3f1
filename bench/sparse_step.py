"""Training-step time of a 3072-1024-512-10 SET MLP: compressed (CSR) against dense and
masked dense, at 90 / 95 / 99% sparsity of the hidden layers (output layer dense).

What it measures: forward + backward + SGD update per batch of 128 (CIFAR-10 shaped
inputs), median over steps, each variant timed in the same process in alternating
rounds. Target (issue 8, CPU): CSR at least 1.5x / 3x / 5x faster than dense at
90 / 95 / 99%.

Run: python bench/sparse_step.py [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from wiringlab.sparse_ops import CSRPattern, csr_linear, values_from_dense

SIZES = [3072, 1024, 512, 10]
BATCH = 128


def _layers(sparsity, g):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        w = torch.randn(n_out, n_in, generator=g) / n_in**0.5
        dense_out = i == len(SIZES) - 2
        mask = torch.ones(n_out, n_in, dtype=torch.bool) if dense_out else torch.rand(n_out, n_in, generator=g) >= sparsity
        layers.append((w, mask, torch.zeros(n_out), dense_out))
    return layers


def _step_fn(kind, layers, x, y):
    params = []
    for w, mask, b, dense_out in layers:
        if kind == "csr" and not dense_out:
            params.append(("csr", values_from_dense(w, mask).requires_grad_(), CSRPattern.from_mask(mask), b.clone().requires_grad_()))
        else:
            params.append((kind if not dense_out else "dense", w.clone().requires_grad_(), mask, b.clone().requires_grad_()))

    def step():
        h = x
        for i, (k, w, extra, b) in enumerate(params):
            if k == "csr":
                h = csr_linear(h, w, extra, b)
            elif k == "masked":
                h = F.linear(h, w * extra, b)
            else:
                h = F.linear(h, w, b)
            if i < len(params) - 1:
                h = F.relu(h)
        F.cross_entropy(h, y).backward()
        with torch.no_grad():
            for _, w, _, b in params:
                w -= 0.01 * w.grad
                b -= 0.01 * b.grad
                w.grad = b.grad = None
    return step


def _time(step, steps):
    step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(BATCH, SIZES[0], generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, MLP {'-'.join(map(str, SIZES))}, batch {BATCH}")
    print("sparsity | dense ms | masked ms | csr ms | csr vs dense | csr vs masked")
    for sparsity in (0.9, 0.95, 0.99):
        layers = _layers(sparsity, g)
        times = {k: [] for k in ("dense", "masked", "csr")}
        for _ in range(args.rounds):
            for kind in times:
                times[kind].append(_time(_step_fn(kind, layers, x, y), args.steps))
        d, m, c = (statistics.median(times[k]) * 1e3 for k in ("dense", "masked", "csr"))
        print(f"{sparsity:8.2f} | {d:8.2f} | {m:9.2f} | {c:6.2f} | {d / c:11.2f}x | {m / c:12.2f}x")


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
    main()
