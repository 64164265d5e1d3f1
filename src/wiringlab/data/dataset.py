"""The :class:`Dataset` container every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import DataFormatError

__all__ = ["Dataset"]

_FEATURE_DTYPES = (torch.uint8, torch.float32)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split held as tensors.

    Images are ``uint8`` of shape ``(N, C, H, W)``; feature data (mnist1d, imdb,
    non-image synthetic) is ``float32`` of shape ``(N, D)``. Labels are ``int64`` ``(N,)``
    with values in ``[0, num_classes)``.

    Attributes:
        name: Registry name of the dataset.
        x_train: Training inputs.
        y_train: Training labels.
        x_test: Test inputs.
        y_test: Test labels.
        input_shape: Shape of one sample, e.g. ``(1, 28, 28)`` or ``(40,)``.
        classes: Class names, index = label.
        citation: How to cite the dataset.
        source: Where the data came from (folder path(s), or ``"generated"``).

    Raises:
        DataFormatError: On construction, when shapes, dtypes or labels are inconsistent.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    classes: tuple[str, ...]
    citation: str
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "classes", tuple(self.classes))
        for split in ("train", "test"):
            self._check_split(split)

    @property
    def num_classes(self) -> int:
        """Number of classes (length of :attr:`classes`)."""
        return len(self.classes)

    def _check_split(self, split: str) -> None:
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        where = f"dataset {self.name!r}, {split} split"
        if x.dtype not in _FEATURE_DTYPES:
            raise DataFormatError(f"{where}: inputs must be uint8 or float32, got {x.dtype}")
        if y.dtype != torch.int64 or y.dim() != 1:
            raise DataFormatError(f"{where}: labels must be int64 of shape (N,), got {y.dtype} {tuple(y.shape)}")
        if x.shape[0] != y.shape[0]:
            raise DataFormatError(f"{where}: {x.shape[0]} inputs but {y.shape[0]} labels")
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataFormatError(f"{where}: sample shape {tuple(x.shape[1:])} != input_shape {self.input_shape}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise DataFormatError(
                f"{where}: labels span [{int(y.min())}, {int(y.max())}] but there are {self.num_classes} classes"
            )

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.x_train.shape)} {self.x_train.dtype}, "
            f"test={tuple(self.x_test.shape)}, classes={self.num_classes}, source={self.source!r})"
        )
