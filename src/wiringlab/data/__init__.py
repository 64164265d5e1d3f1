"""Datasets for wiringlab: a registry of names, hash-checked local/cached/downloaded files, and loaders.

Example:
    >>> from wiringlab.data import load_dataset
    >>> ds = load_dataset("synthetic", n_train=64, n_test=16)
    >>> ds.x_train.shape, ds.num_classes
    (torch.Size([64, 1, 28, 28]), 10)
"""

from .api import describe_dataset, fetch_dataset, list_datasets, load_dataset
from .dataset import Dataset
from .errors import (
    DataFormatError,
    DataIntegrityError,
    DatasetError,
    DatasetNotFoundError,
    DatasetOptionError,
    UnknownDatasetError,
)

__all__ = [
    "Dataset",
    "load_dataset",
    "list_datasets",
    "describe_dataset",
    "fetch_dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "DataIntegrityError",
    "DataFormatError",
    "DatasetOptionError",
    "UnknownDatasetError",
]
