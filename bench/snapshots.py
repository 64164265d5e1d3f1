"""Cost of weight snapshots: training time with a snapshot after every epoch vs without.

What it measures: wall time of training a 784-500-500-10 MLP (the largest hidden layer
of the symmetry recipes, twice) for a few epochs on MNIST-shaped synthetic data,
with `SnapshotCallback(layers="all", epochs="all")` writing every layer's effective
weights at init and after every epoch into a temporary folder, against the same
training without it, in alternating rounds in the same process. Prints the ratio.

Run: python bench/snapshots.py [--samples 12000] [--epochs 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from wiringlab.engine import DeviceData, train
from wiringlab.engine.snapshots import SnapshotCallback
from wiringlab.experiment.config import MLPConfig, TrainConfig
from wiringlab.init import init_parameters_
from wiringlab.models import build_model
from wiringlab.seeding import make_generator


def _data(samples: int) -> DeviceData:
    g = make_generator(0, "bench-data")
    x = torch.randn(samples, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (samples,), generator=g)
    return DeviceData(x, y, x[:1000], y[:1000], (1, 28, 28), 10)


def _time(data: DeviceData, epochs: int, snapshots: bool) -> float:
    model = init_parameters_(build_model(MLPConfig(hidden=[500, 500]), (1, 28, 28), 10), make_generator(0, "init"))
    cfg = TrainConfig(epochs=epochs, batch_size=128, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        callbacks = [SnapshotCallback("all", "all", directory=Path(folder))] if snapshots else []
        start = time.perf_counter()
        train(model, data, cfg, seed=0, callbacks=callbacks)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = _data(args.samples)
    _time(data, 1, False)  # warm-up
    plain, snap = [], []
    for _ in range(args.rounds):
        plain.append(_time(data, args.epochs, False))
        snap.append(_time(data, args.epochs, True))
    p, s = statistics.median(plain), statistics.median(snap)
    print(f"threads={torch.get_num_threads()} samples={args.samples} epochs={args.epochs} rounds={args.rounds}")
    print(f"without snapshots: {p:.3f} s   with a snapshot per epoch (+init): {s:.3f} s   ratio {s / p:.3f}")


if __name__ == "__main__":
    main()
