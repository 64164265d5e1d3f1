"""Cost of full weight matching: `rebasin_weights` against the one-pass `match_weights`.

What it measures: wall time to align two chains of the symmetry recipes' sizes (MLPs
784-128-10, 784-512-256-10 and 784-1000-1000-10, the weights of two independently seeded
default-initialised networks, biases as extras), the full matching against the forward
pass in alternating rounds in the same process; prints the ratio, both aligned cosines over
all layers and the matching objective J (weights and biases). Untrained networks are the
hard case for matching (no shared structure to find), so the full matching's extra sweeps
are an upper end.

Run: python bench/weight_matching.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wiringlab.analysis.permutation import chain_unit_extras, chain_weights
from wiringlab.analysis.similarity import flat_cosine, match_weights, permute_chain
from wiringlab.analysis.weight_matching import matching_objective, rebasin_weights
from wiringlab.experiment.config import MLPConfig
from wiringlab.init import init_parameters_
from wiringlab.models import build_model
from wiringlab.seeding import make_generator

SIZES = [[128], [512, 256], [1000, 1000]]


def _chain(hidden: list[int], seed: int):
    model = init_parameters_(build_model(MLPConfig(hidden=hidden), (1, 28, 28), 10), make_generator(seed, "init"))
    return chain_weights(model), chain_unit_extras(model)


def _timed(match, a, b) -> tuple[float, list[torch.Tensor]]:
    """Seconds `match` takes to align chain b = (weights, extras) to chain a, and its permutations."""
    start = time.perf_counter()
    perms = match(a[0], b[0], a[1], b[1])
    return time.perf_counter() - start, perms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.rounds} rounds")
    for hidden in SIZES:
        a, b = _chain(hidden, 0), _chain(hidden, 1)
        times = {"forward": [], "full": []}
        for _ in range(args.rounds):
            for name, match in (("forward", match_weights), ("full", rebasin_weights)):
                seconds, perms = _timed(match, a, b)
                times[name].append(seconds)
                cosine = flat_cosine(a[0], permute_chain(b[0], perms))
                objective = matching_objective(a[0], b[0], perms, a[1], b[1])
                times[name + "_cos"], times[name + "_j"] = cosine, objective
        forward, full = statistics.median(times["forward"]), statistics.median(times["full"])
        print(f"784-{'-'.join(map(str, hidden))}-10: forward {forward * 1e3:8.1f} ms, full {full * 1e3:8.1f} ms "
              f"({full / forward:5.1f}x); aligned cosine {times['forward_cos']:.4f} -> {times['full_cos']:.4f}, "
              f"J {times['forward_j']:.3f} -> {times['full_j']:.3f}")


if __name__ == "__main__":
    main()
