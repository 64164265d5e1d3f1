"""Errors raised by :mod:`wiringlab.data`.

Every error is a :class:`DatasetError`, and every message says what to do about it.
"""

from __future__ import annotations

__all__ = [
    "DatasetError",
    "DatasetNotFoundError",
    "DataIntegrityError",
    "DataFormatError",
    "UnknownDatasetError",
    "DatasetOptionError",
]


class DatasetError(Exception):
    """Base class of every dataset error."""


class DatasetNotFoundError(DatasetError):
    """The files of a dataset are in none of the places looked, and none could be downloaded."""


class DataIntegrityError(DatasetError):
    """A file is present but its hash differs from the registry's (truncated or corrupted)."""


class DataFormatError(DatasetError):
    """A file's content does not follow its format (wrong magic number, truncated, malformed)."""


class UnknownDatasetError(DatasetError):
    """The dataset name is not in the registry."""


class DatasetOptionError(DatasetError, ValueError):
    """An option is unknown to the dataset, or its value is invalid."""
