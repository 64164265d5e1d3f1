"""The data path: a whole dataset as tensors on the run's device.

Normalisation happens once, up front; an epoch is a `randperm` from the run's data
generator and batches are slices of it. There is no per-sample Python in the loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DeviceData", "to_device_data", "iterate_batches"]


@dataclass(frozen=True)
class DeviceData:
    """Float inputs and int64 labels on one device, normalised with train statistics."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    num_classes: int

    @property
    def device(self) -> torch.device:
        return self.x_train.device


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() == 4:  # (N, C, H, W): per-channel statistics, shaped to broadcast
        mean = x.mean(dim=(0, 2, 3), keepdim=True)[0:1]
        std = x.std(dim=(0, 2, 3), keepdim=True)[0:1]
    else:  # feature vectors: one scalar, so relative feature scales are kept
        mean, std = x.mean(), x.std()
    return mean, std.clamp_min(1e-8)


def to_device_data(dataset, config, device: torch.device, dtype=torch.float32) -> DeviceData:
    """Move `dataset` to `device` as float tensors, cut to `config.n_train/n_test`.

    Args:
        dataset: a `wiringlab.data.Dataset`.
        config: a `DataConfig` (uses n_train, n_test, normalize).
        device: where training runs.

    Returns:
        A `DeviceData`; with normalize="standard", inputs are (x - mean) / std with the
        mean and std of the (cut) training inputs, per channel for images; with
        "minmax", (x - min) / (max - min) with the global min and max of the training
        inputs (uint8 pixels become x / 255, blank pixels stay exactly 0).
    """
    x_train, y_train = dataset.x_train[: config.n_train], dataset.y_train[: config.n_train]
    x_test, y_test = dataset.x_test[: config.n_test], dataset.y_test[: config.n_test]
    x_train = x_train.to(device=device, dtype=dtype)
    x_test = x_test.to(device=device, dtype=dtype)
    if config.normalize == "standard":
        mean, std = _channel_stats(x_train)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    elif config.normalize == "minmax":
        low, span = x_train.min(), (x_train.max() - x_train.min()).clamp_min(1e-8)
        x_train, x_test = (x_train - low) / span, (x_test - low) / span
    return DeviceData(
        x_train.contiguous(), y_train.to(device), x_test.contiguous(), y_test.to(device),
        tuple(dataset.input_shape), dataset.num_classes,
    )


def iterate_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device):
    """Yield index tensors of one shuffled epoch (the last batch may be smaller)."""
    order = torch.randperm(n, generator=generator, device=device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
