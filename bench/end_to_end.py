"""End to end: a whole recipe with the stacked engine against the same runs one at a
time, in one invocation, on the real dataset.

What it measures: wall time of `run_sweep` over every run of the recipe (default: the
progressive-sharpening recipe, 5 configurations x 3 seeds, 12 epochs, on Fashion-MNIST),
once with stacking (the default: all 15 runs differ only in values, so they form one
stack) and once with `stack=False`, each into a fresh results folder; then checks that
both gave the same final test accuracy per run (4 decimals).

Run: python bench/end_to_end.py [--recipe recipes/spatial/progressive-sharpening.yaml]
        [--dataset fashion-mnist] [--epochs 12] [--n-train N]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from wiringlab.experiment import expand, load_recipe, run_sweep
from wiringlab.experiment.grouping import group_runs


def _sweep(recipe, specs, out: Path, stack: bool) -> tuple[float, dict]:
    start = time.perf_counter()
    result = run_sweep(recipe, specs, out, stack=stack)
    wall = time.perf_counter() - start
    return wall, {s["run_id"]: s for s in result.summaries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/spatial/progressive-sharpening.yaml")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--n-train", type=int, default=None, help="first N training samples (default: all)")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: the recipe's, auto)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    overrides = [("data.name", args.dataset), ("train.epochs", args.epochs), ("train.progress", False)]
    if args.n_train:
        overrides.append(("data.n_train", args.n_train))
    if args.device:
        overrides.append(("train.device", args.device))
    recipe = load_recipe(Path(args.recipe))
    specs = expand(recipe, args.recipe, overrides)
    groups = [len(g) for g in group_runs(specs)]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {recipe.name} on {args.dataset}: "
          f"{len(specs)} runs x {args.epochs} epochs; stacks of {groups}")
    with tempfile.TemporaryDirectory() as tmp:
        stacked_s, stacked = _sweep(recipe, specs, Path(tmp) / "stacked", stack=True)
        alone_s, alone = _sweep(recipe, specs, Path(tmp) / "alone", stack=False)
    print(f"stacked: {stacked_s:.1f} s; one at a time: {alone_s:.1f} s; stacked / alone = {stacked_s / alone_s:.3f}")
    unfinished = sorted(f"{k} ({side})" for side, runs in (("stacked", stacked), ("alone", alone))
                        for k, s in runs.items() if s["status"] != "completed")
    if unfinished:  # a failed or diverged run has no final metrics; the times above include it
        print(f"not completed: {', '.join(unfinished)}")
    done = [k for k in alone if stacked[k]["status"] == alone[k]["status"] == "completed"]
    if not done:
        return
    gaps = [abs(stacked[k]["final"]["test_acc"] - alone[k]["final"]["test_acc"]) for k in done]
    print(f"final test accuracy, stacked vs alone: {sum(g < 5e-5 for g in gaps)} of {len(gaps)} runs equal to 4 "
          f"decimals; largest gap {max(gaps):.4f} (float rounding differs between bmm and mm)")


if __name__ == "__main__":
    main()
