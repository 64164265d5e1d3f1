"""Weight snapshots: the effective weights of chosen layers at chosen epochs, on disk.

`SnapshotCallback` writes ``<run>/snapshots/epoch_NNN.safetensors`` (epoch 0 = at
initialisation, before the first step) holding ``{"conv<i>" or "linear<i>": W_eff}`` for the
chosen layers (`snapshot_layers`; a LeNet's convolutions are hidden layers too) — the same
keys as the run's effective_weights.safetensors. The within-network symmetry analysis
(`wiringlab.analysis.symmetry`) reads them back with `read_snapshots`.

Cost: one `effective_weight()` per chosen layer, a device→CPU copy and one file write
per snapshot epoch; nothing per step. A 784×500 layer is 1.5 MB per snapshot in
float32, so snapshotting every epoch is cheap next to the epoch itself
(`bench/snapshots.py` measures the ratio).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..experiment.store import atomic_write_bytes
from ..layers import effective_weight
from .callbacks import Callback, TrainState

__all__ = ["SnapshotCallback", "snapshot_layers", "snapshot_path", "read_snapshots", "SNAPSHOT_DIR"]

SNAPSHOT_DIR = "snapshots"
_NAME = re.compile(r"epoch_(\d+)\.safetensors")


def snapshot_path(directory: Path, epoch: int) -> Path:
    """``directory/epoch_NNN.safetensors`` (zero-padded, so names sort by epoch)."""
    return Path(directory) / f"epoch_{epoch:03d}.safetensors"


def snapshot_layers(model: nn.Module, layers: str | Sequence[int] = "hidden") -> list[str]:
    """Resolve a layer choice to snapshot keys (`models.named_weight_layers`).

    Args:
        model: the model.
        layers: "hidden" (every convolution and linear layer but the classifier, the last
            linear layer), "all", or indices among `linear_layers(model)`.

    Returns:
        Keys such as "conv0", "linear1", in registration order.

    Raises:
        ValueError: an index is out of range (the message lists the model's layers).
    """
    from ..models import linear_layers, named_weight_layers

    named, found = named_weight_layers(model), linear_layers(model)
    if layers == "all":
        return [name for name, _ in named]
    if layers == "hidden":
        return [name for name, module in named if not (found and module is found[-1])]
    bad = [i for i in layers if not 0 <= i < len(found)]
    if bad:
        shapes = ", ".join(f"{i}: {tuple(m.weight.shape)}" for i, m in enumerate(found))
        raise ValueError(f"snapshots.layers {bad} out of range; this model's linear layers are {{{shapes}}}")
    return [f"linear{i}" for i in sorted(set(layers))]


class SnapshotCallback(Callback):
    """Save effective weights of chosen layers at chosen epochs.

    Args:
        layers: "hidden", "all" (convolutions included), or indices among `linear_layers(model)`.
        epochs: "all" (init and every epoch) or the epochs completed after which to save
            (0 = at initialisation). Epochs beyond training are ignored.
        directory: where to write; default ``state.run_dir / "snapshots"``.

    Raises:
        ValueError: (at train start) no directory given and the run has no run_dir.
    """

    def __init__(self, layers: str | Sequence[int] = "hidden", epochs: str | Sequence[int] = "all",
                 directory: Path | None = None) -> None:
        self.layers = layers
        self.epochs = epochs if epochs == "all" else set(int(e) for e in epochs)
        self.directory = Path(directory) if directory is not None else None
        self._names: list[str] = []

    def _wanted(self, epoch: int) -> bool:
        return self.epochs == "all" or epoch in self.epochs

    @torch.no_grad()
    def _save(self, state: TrainState) -> None:
        from safetensors.torch import save

        from ..models import named_weight_layers

        modules = dict(named_weight_layers(state.model))
        tensors = {name: effective_weight(modules[name]).detach().float().cpu().contiguous() for name in self._names}
        metadata = {"epoch": str(state.epoch), "step": str(state.step), "format": "wiringlab-snapshot-1"}
        atomic_write_bytes(snapshot_path(self.directory, state.epoch), save(tensors, metadata=metadata))

    def on_train_start(self, state: TrainState) -> None:
        if self.directory is None:
            if state.run_dir is None:
                raise ValueError("SnapshotCallback needs a folder: pass directory=... or train with run_dir=...")
            self.directory = Path(state.run_dir) / SNAPSHOT_DIR
        self._names = snapshot_layers(state.model, self.layers)
        if self._wanted(0):
            self._save(state)

    def on_epoch_end(self, state: TrainState) -> None:
        if self._wanted(state.epoch):
            self._save(state)


def read_snapshots(directory: Path) -> list[tuple[int, dict[str, torch.Tensor]]]:
    """Every snapshot in `directory` as (epoch, {"conv<i>"/"linear<i>": W_eff}), sorted by epoch.

    Returns an empty list when the folder does not exist (a run without snapshots).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), load_file(str(path))))
    return sorted(found, key=lambda item: item[0])
