"""Declarative descriptions of datasets: their files, hashes, mirrors and loader."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dataset import Dataset
    from .sources import FileCheck

__all__ = ["FileSpec", "DatasetSpec", "LoadContext"]


@dataclass(frozen=True)
class FileSpec:
    """One file a dataset needs.

    Attributes:
        role: What the loader calls it, e.g. ``"train_images"`` or ``"archive"``.
        name: Its name in a data folder, decompressed (``train-images-idx3-ubyte``), or
            the archive's name when only the archive is used (``cifar-10-binary.tar.gz``).
        sha256: sha256 of the decompressed content, or None where unknown: such a file is
            accepted only as the archive, checked against ``archive_hash``.
        archive: Name of the file as downloaded (``train-images-idx3-ubyte.gz``); also
            accepted in a data folder.
        archive_hash: pooch-style hash of the downloaded file (``"md5:..."``), or None.
    """

    role: str
    name: str
    sha256: str | None
    archive: str
    archive_hash: str | None

    def __post_init__(self) -> None:
        if self.sha256 is None and self.archive_hash is None:
            raise ValueError(f"{self.name}: a registry file needs a content or an archive hash")

    @property
    def candidates(self) -> tuple[str, ...]:
        """File names accepted in a folder, in the order they are tried."""
        if self.sha256 is None:
            return (self.archive,)
        return tuple(dict.fromkeys((self.name, self.archive)))


@dataclass(frozen=True)
class LoadContext:
    """Everything a loader gets.

    Attributes:
        spec: The dataset's registry entry.
        files: Verified files by role (empty for generated datasets).
        options: Validated options, defaults filled in.
        cache_dir: Folder a generated dataset may cache itself in.
        source: Human-readable origin, copied into :attr:`Dataset.source`.
    """

    spec: DatasetSpec
    files: Mapping[str, FileCheck]
    options: Mapping[str, Any]
    cache_dir: Path
    source: str


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry.

    Attributes:
        name: Registry name (also the folder name under data roots).
        title: Display name, e.g. ``"Fashion-MNIST"``.
        files: Files to find or download; empty for generated datasets.
        mirrors: Base URLs tried in order; a file's URL is ``mirror + archive``.
        loader: Builds the :class:`Dataset` from a :class:`LoadContext`.
        classes: Class names, index = label (may be replaced by the loader for
            option-dependent datasets such as ``synthetic``).
        citation: How to cite it.
        system_hint: Command that installs it system-wide, e.g. an apt-get line, or None.
        options: Allowed options and their defaults.
        cached: For generated datasets: True when loading writes a cache that
            :func:`~wiringlab.data.fetch_dataset` can prepare (mnist1d).
    """

    name: str
    title: str
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...]
    loader: Callable[[LoadContext], Dataset]
    classes: tuple[str, ...]
    citation: str
    system_hint: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    cached: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def generated(self) -> bool:
        """True for datasets made in code rather than read from files."""
        return not self.files
