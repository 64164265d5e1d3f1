"""Step time of an MLP with `SpatialLinear` (multiply, static exponential kernel) against the
same MLP with `nn.Linear`, measured in the same run.

What it measures: one training step (forward, cross-entropy, backward, fused SGD step)
of a 784-1000-1000-10 MLP at batch 128, every layer spatial in the prior model (the
kernel is a constant buffer; W ⊙ K costs one elementwise pass over each weight matrix
forward and one backward). Both models are timed in alternating blocks so machine
noise hits both alike; the figure is the median step time per model and their ratio.
Target (issue 3): spatial / plain <= 1.2 on CPU.

Run: python bench/spatial_step.py [--steps 50] [--rounds 5] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import measured_matmul_gflops, mlp_step_flops  # noqa: E402

from wiringlab.init import init_parameters_  # noqa: E402
from wiringlab.layers import SpatialLinear  # noqa: E402
from wiringlab.seeding import make_generator  # noqa: E402

SIZES = [784, 1000, 1000, 10]
BATCH = 128


def build(kind: str, device: torch.device) -> nn.Module:
    layers = []
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        if kind == "spatial":
            layers.append(SpatialLinear(n_in, n_out, kernel="exponential", mode="multiply", device=device))
        else:
            layers.append(nn.Linear(n_in, n_out, device=device))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    return init_parameters_(nn.Sequential(*layers), make_generator(0, "init", device))


def timed_steps(model, optimizer, x, y, steps: int, device: torch.device) -> float:
    """Seconds per step, averaged over ``steps`` steps (synchronised at both ends)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        loss = F.cross_entropy(model(x[i % len(x)]), y[i % len(y)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(8, BATCH, SIZES[0], generator=g, device=device)
    y = torch.randint(0, SIZES[-1], (8, BATCH), generator=g, device=device)
    models = {kind: build(kind, device) for kind in ("plain", "spatial")}
    optims = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, fused=device.type in ("cpu", "cuda"))
              for k, m in models.items()}
    for kind in models:  # warm-up
        timed_steps(models[kind], optims[kind], x, y, 5, device)
    times = {kind: [] for kind in models}
    for _ in range(args.rounds):
        for kind in models:
            times[kind].append(timed_steps(models[kind], optims[kind], x, y, args.steps, device))
    plain, spatial = statistics.median(times["plain"]), statistics.median(times["spatial"])
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    if device.type == "cpu":
        peak = measured_matmul_gflops()
        print(f"measured fp32 matmul peak {peak:.1f} GFLOP/s; "
              f"plain MLP step at {mlp_step_flops(SIZES, BATCH) / plain / 1e9 / peak:.0%} of it")
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, median of {args.rounds} blocks of {args.steps} steps")
    print(f"nn.Linear                                : {plain * 1e3:8.2f} ms/step")
    print(f"SpatialLinear (multiply, static kernel)  : {spatial * 1e3:8.2f} ms/step")
    print(f"ratio spatial / plain: {spatial / plain:.3f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
