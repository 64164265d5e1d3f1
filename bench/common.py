"""Shared timing helpers for the benchmarks: measured peak, robust timing."""

from __future__ import annotations

import statistics
import time

import torch


def measured_matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Best-of-`repeats` fp32 GFLOP/s of a size x size matmul: the machine's practical peak."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def mlp_step_flops(sizes: list[int], batch: int) -> float:
    """FLOPs of one training step of a dense MLP: forward 2·B·in·out per layer; backward
    the weight gradient (2·B·in·out) for every layer and the input gradient for all but the first."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(2 * batch * i * o for i, o in layers)
    weight_grad = forward
    input_grad = forward - 2 * batch * layers[0][0] * layers[0][1]
    return forward + weight_grad + input_grad


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
