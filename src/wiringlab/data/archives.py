"""Byte-level helpers: hashes, gzip detection, reading members of tar archives.

Nothing here knows about datasets; callers name files in their messages.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from .errors import DataFormatError

__all__ = [
    "GZIP_MAGIC",
    "is_gzip",
    "file_digest",
    "split_hash",
    "read_content",
    "content_sha256",
    "read_tar_members",
]

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
# Where tarfile's "data" filter is asked to vet members; nothing is written there.
_VETTING_ROOT = os.path.join(os.sep, "wiringlab-tar-vetting")


def is_gzip(path: str | os.PathLike) -> bool:
    """Tell whether a file starts with the gzip magic bytes.

    Args:
        path: File to inspect.

    Returns:
        True when the first two bytes are ``1f 8b``.
    """
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def split_hash(known: str) -> tuple[str, str]:
    """Split a pooch-style hash ``"alg:hex"`` (bare hex means sha256).

    Args:
        known: The hash string.

    Returns:
        ``(algorithm, lowercase hex digest)``.
    """
    algorithm, _, digest = known.rpartition(":")
    return (algorithm or "sha256").lower(), digest.lower()


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hash a file's bytes as stored (no decompression), streaming.

    Args:
        path: File to hash.
        algorithm: Any :func:`hashlib.new` name.

    Returns:
        Lowercase hex digest.
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_content(path: str | os.PathLike) -> bytes:
    """Read a file, decompressing it when it is gzip (judged by content, not name).

    Args:
        path: File to read.

    Returns:
        The decompressed bytes.

    Raises:
        DataFormatError: The gzip stream is truncated or corrupt.
    """
    if not is_gzip(path):
        return Path(path).read_bytes()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"{path}: gzip data is truncated or corrupt ({exc})") from exc


def content_sha256(path: str | os.PathLike) -> tuple[str, bytes]:
    """Hash a file's decompressed content.

    Args:
        path: A raw or gzip-compressed file.

    Returns:
        ``(sha256 hex digest, decompressed bytes)``.

    Raises:
        DataFormatError: The gzip stream is truncated or corrupt.
    """
    data = read_content(path)
    return hashlib.sha256(data).hexdigest(), data


def _normalise(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def read_tar_members(path: str | os.PathLike, names: Iterable[str]) -> dict[str, bytes]:
    """Read the named regular-file members of a (compressed) tar archive into memory.

    Each wanted member is vetted with :func:`tarfile.data_filter` (the ``filter="data"``
    rules: no absolute paths, no escaping the destination, no links or devices), and
    nothing is written to disk. Reading stops as soon as every name was found.

    Args:
        path: The archive (``.tar``, ``.tar.gz``, ...). Check its hash before calling.
        names: Member names, e.g. ``"aclImdb/imdb.vocab"``.

    Returns:
        Mapping from each name to its bytes.

    Raises:
        DataFormatError: The archive is unreadable, a member is missing or not a regular file.
    """
    wanted = set(names)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = _normalise(member.name)
                if name not in wanted:
                    continue
                found[name] = _read_member(archive, member, path)
                if len(found) == len(wanted):
                    break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"{path}: cannot read the tar archive ({exc})") from exc
    missing = sorted(wanted - found.keys())
    if missing:
        raise DataFormatError(f"{path}: archive lacks the member(s) {', '.join(missing)}")
    return found


def _vet(member: tarfile.TarInfo, path: str | os.PathLike) -> tarfile.TarInfo:
    """Apply tarfile's ``"data"`` filter rules to a member (a strict fallback on Pythons without it)."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is not None:
        try:
            return data_filter(member, _VETTING_ROOT)
        except tarfile.FilterError as exc:
            raise DataFormatError(f"{path}: unsafe archive member {member.name!r} ({exc})") from exc
    parts = member.name.replace("\\", "/").split("/")
    if member.name.startswith(("/", "\\")) or ".." in parts:
        raise DataFormatError(f"{path}: unsafe archive member {member.name!r}")
    return member


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo, path: str | os.PathLike) -> bytes:
    if not _vet(member, path).isfile():
        raise DataFormatError(f"{path}: archive member {member.name!r} is not a regular file")
    handle = archive.extractfile(member)
    if handle is None:  # pragma: no cover - isfile() members always have data
        raise DataFormatError(f"{path}: archive member {member.name!r} has no data")
    with handle:
        return handle.read()
