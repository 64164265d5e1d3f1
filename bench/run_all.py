"""Run every benchmark of bench/, one after another, each in its own process, and print
their reports. Each benchmark measures its ratio against its own baseline in the same
process; run this on an otherwise idle machine and quote the figures with the machine.

Run: python bench/run_all.py [--quick] [--only NAME ...] [--device cuda]
    --quick: smaller sizes (minutes instead of ~25 min on a 2-core CPU); the end-to-end
    recipe then runs 2 epochs on 10,000 Fashion-MNIST images.
    --device cuda: the GPU figures of issue 8 in one command — the benchmarks that take a
    device, on it (stacked members at M = 16, the GPU target); the CPU-only ones
    (throughput's DataLoader baseline, the CSR kernels' CPU targets, snapshots, weight matching) are
    skipped and named.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name: (full arguments, quick arguments)
BENCHMARKS = {
    "throughput": (["--samples", "12800", "--rounds", "3"], ["--samples", "3200", "--rounds", "2"]),
    "spatial_step": ([], ["--steps", "10", "--rounds", "2"]),
    "stacked": (["--members", "8", "--samples", "6400", "--rounds", "3", "--workers", "2"],
                ["--members", "8", "--samples", "1280", "--rounds", "2", "--workers", "2"]),
    "sparse_step": ([], ["--steps", "10", "--rounds", "2"]),
    "sparse_scale": ([], ["--size", "4000"]),
    "snapshots": ([], ["--samples", "3000", "--epochs", "2", "--rounds", "2"]),
    "weight_matching": ([], ["--rounds", "1"]),
    "end_to_end": ([], ["--epochs", "2", "--n-train", "10000"]),
}
# the benchmarks that take --device, and what they add on a GPU
ON_DEVICE = {"spatial_step": [], "stacked": ["--members", "16"], "end_to_end": []}


def _arguments(name: str, quick: bool, device: str | None) -> list[str]:
    full, short = BENCHMARKS[name]
    arguments = list(short if quick else full)
    if device:  # appended: argparse keeps the last value of a repeated option
        arguments += ON_DEVICE[name] + ["--device", device]
    return arguments


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    parser.add_argument("--device", default=None, help="e.g. cuda: run the device-aware benchmarks there")
    args = parser.parse_args()
    names = args.only or list(BENCHMARKS)
    if args.device:
        skipped = [n for n in names if n not in ON_DEVICE]
        if skipped:
            print(f"CPU-only, skipped with --device {args.device}: {', '.join(skipped)}")
        names = [n for n in names if n in ON_DEVICE]
    failed = []
    for name in names:
        command = [sys.executable, str(HERE / f"{name}.py"), *_arguments(name, args.quick, args.device)]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(command)
        print(f"=== {name}: exit {code}, {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
