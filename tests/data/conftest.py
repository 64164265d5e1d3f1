"""Fixtures for the wiringlab.data tests: an isolated environment and tiny files in the real formats.

Every test runs offline (``WIRINGLAB_OFFLINE=1``), with the user cache and the system data
roots pointed at its own temporary folder, so nothing touches the network or ``~/.cache``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from wiringlab.data import registry, sources
from wiringlab.data.loaders import load_idx
from wiringlab.data.spec import DatasetSpec, FileSpec

MIRRORS = ("https://mirror-a.invalid/data/", "https://mirror-b.invalid/data/")


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Encode an array as IDX (big-endian header)."""
    header = struct.pack(">I", (type_code << 8) | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    return header + array.astype(dtype).tobytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tar_gz(members: dict[str, bytes]) -> bytes:
    """Build a .tar.gz holding the given regular files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tiny_idx_set(seed: int = 0, n_train: int = 6, n_test: int = 3, side: int = 4) -> dict[str, bytes]:
    """Decompressed IDX content by file name: a tiny MNIST-shaped dataset."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    return {name: idx_bytes(array) for name, array in arrays.items()}


def write_files(folder: Path, contents: dict[str, bytes], compress: bool = True) -> Path:
    """Write files into a folder, gzip-compressed as ``<name>.gz`` when ``compress``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / name).write_bytes(data)
    return folder


def fake_idx_spec(
    name: str, contents: dict[str, bytes], system_hint: str | None = "apt-get install dataset-fake"
) -> DatasetSpec:
    """A registry entry for a tiny IDX dataset whose hashes match ``contents``."""
    files = registry.idx_files(
        {
            role: (sha256(contents[fname]), f"md5:{md5(gzip.compress(contents[fname], mtime=0))}")
            for role, fname in (
                ("train_images", "train-images-idx3-ubyte"),
                ("train_labels", "train-labels-idx1-ubyte"),
                ("test_images", "t10k-images-idx3-ubyte"),
                ("test_labels", "t10k-labels-idx1-ubyte"),
            )
        }
    )
    return DatasetSpec(
        name=name,
        title=name.upper(),
        files=files,
        mirrors=MIRRORS,
        loader=load_idx,
        classes=tuple(str(i) for i in range(10)),
        citation=f"Citation of {name}.",
        system_hint=system_hint,
    )


def archive_spec(name: str, archive_name: str, archive: bytes, loader, classes, options=None) -> DatasetSpec:
    """A registry entry for a dataset read from one hash-checked archive (content hash unknown)."""
    fspec = FileSpec("archive", archive_name, None, archive_name, f"md5:{md5(archive)}")
    return DatasetSpec(
        name=name,
        title=name,
        files=(fspec,),
        mirrors=MIRRORS,
        loader=loader,
        classes=classes,
        citation=f"Citation of {name}.",
        options=options or {},
    )


class Served:
    """A pooch-style downloader serving fixed bytes per URL and failing for others; records calls."""

    def __init__(self, served: dict[str, bytes]):
        self.served = served
        self.calls: list[str] = []

    def __call__(self, url, output_file, pooch, check_only=False):
        self.calls.append(url)
        if url not in self.served:
            raise ConnectionError(f"cannot reach {url}")
        if hasattr(output_file, "write"):
            output_file.write(self.served[url])
        else:
            Path(output_file).write_bytes(self.served[url])


@pytest.fixture(autouse=True)
def isolated_data_env(tmp_path, monkeypatch):
    """Offline, private cache, private system roots, no WIRINGLAB_DATA."""
    monkeypatch.setenv("WIRINGLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WIRINGLAB_OFFLINE", "1")
    monkeypatch.delenv("WIRINGLAB_DATA", raising=False)
    monkeypatch.setattr(sources, "SYSTEM_DIRS", (tmp_path / "system",))
    return SimpleNamespace(cache=tmp_path / "cache", system=tmp_path / "system")


@pytest.fixture
def register(monkeypatch):
    """Add specs to the registry for one test: ``register(spec, ...)``."""

    def add(*specs: DatasetSpec) -> None:
        monkeypatch.setattr(registry, "REGISTRY", {**registry.REGISTRY, **{s.name: s for s in specs}})

    return add


@pytest.fixture
def fake_idx(register):
    """A registered tiny IDX dataset ``fake-idx``: returns (spec, decompressed contents)."""
    contents = tiny_idx_set()
    spec = fake_idx_spec("fake-idx", contents)
    register(spec)
    return spec, contents


@pytest.fixture(scope="session")
def dfiles():
    """The file-building helpers of this conftest, as one namespace (robust to pytest's import mode)."""
    return SimpleNamespace(
        idx_bytes=idx_bytes,
        sha256=sha256,
        md5=md5,
        tar_gz=tar_gz,
        tiny_idx_set=tiny_idx_set,
        write_files=write_files,
        fake_idx_spec=fake_idx_spec,
        archive_spec=archive_spec,
        Served=Served,
        MIRRORS=MIRRORS,
    )
