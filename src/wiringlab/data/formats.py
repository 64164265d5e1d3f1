"""Pure parsers for the on-disk formats: IDX, CIFAR-10 binary, svmlight bag-of-words.

Parsers take bytes (already decompressed) and a ``name`` used in error messages, and
return numpy arrays; they never touch the network or the file system, except
:func:`read_idx`, a convenience over a path.
"""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np

from .archives import GZIP_MAGIC, read_content
from .errors import DataFormatError

__all__ = [
    "IDX_LABELS_MAGIC",
    "IDX_IMAGES_MAGIC",
    "CIFAR_RECORD_BYTES",
    "parse_idx",
    "parse_idx_images",
    "parse_idx_labels",
    "read_idx",
    "parse_cifar_batch",
    "parse_labeled_bow",
    "parse_vocab",
]

IDX_LABELS_MAGIC = 0x00000801
IDX_IMAGES_MAGIC = 0x00000803
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CIFAR_IMAGE_SHAPE = (3, 32, 32)
CIFAR_RECORD_BYTES = 1 + 3 * 32 * 32


def _describe_magic(magic: int) -> str:
    dtype = _IDX_DTYPES.get((magic >> 8) & 0xFF)
    kind = dtype.name if dtype is not None else "unknown type"
    return f"0x{magic:08x} ({kind}, {magic & 0xFF} dims)"


def _idx_header(data: bytes, name: str) -> tuple[int, tuple[int, ...], int]:
    if len(data) < 4:
        raise DataFormatError(f"{name}: {len(data)} bytes is too short for an IDX header (truncated)")
    (magic,) = struct.unpack(">I", data[:4])
    ndim, type_code = magic & 0xFF, (magic >> 8) & 0xFF
    if magic >> 16 or type_code not in _IDX_DTYPES or ndim == 0:
        hint = " (the data is gzip-compressed; decompress it first)" if data[:2] == GZIP_MAGIC else ""
        raise DataFormatError(f"{name}: not an IDX file: bad magic number 0x{magic:08x}{hint}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{name}: IDX header needs {header} bytes but the file has {len(data)} (truncated)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    return magic, dims, header


def parse_idx(data: bytes, *, name: str = "<bytes>", expected_magic: int | None = None) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic, then one uint32 per dimension).

    Args:
        data: The decompressed file content.
        name: File name for error messages.
        expected_magic: When given, the magic number the file must have, e.g.
            :data:`IDX_IMAGES_MAGIC`.

    Returns:
        A writable array in native byte order with the header's shape.

    Raises:
        DataFormatError: Wrong magic number (expected vs found), or a size that does not
            match the header (truncated, or trailing bytes).
    """
    magic, dims, offset = _idx_header(data, name)
    if expected_magic is not None and magic != expected_magic:
        raise DataFormatError(
            f"{name}: wrong IDX magic number: expected {_describe_magic(expected_magic)}, "
            f"found {_describe_magic(magic)}"
        )
    dtype = _IDX_DTYPES[(magic >> 8) & 0xFF]
    expected_bytes = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    body = len(data) - offset
    if body < expected_bytes:
        raise DataFormatError(
            f"{name}: IDX file is truncated: header says shape {tuple(dims)} "
            f"({expected_bytes} data bytes) but only {body} bytes follow the header"
        )
    if body > expected_bytes:
        raise DataFormatError(
            f"{name}: IDX size does not match its header: shape {tuple(dims)} needs "
            f"{expected_bytes} data bytes, found {body} ({body - expected_bytes} extra)"
        )
    array = np.frombuffer(data, dtype=dtype, count=expected_bytes // dtype.itemsize, offset=offset)
    return array.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def parse_idx_images(data: bytes, *, name: str = "<bytes>") -> np.ndarray:
    """Parse an IDX image file (magic ``0x00000803``) into ``uint8 (N, 1, H, W)``.

    Args:
        data: The decompressed file content.
        name: File name for error messages.

    Returns:
        Images with a channel axis added.

    Raises:
        DataFormatError: See :func:`parse_idx`.
    """
    images = parse_idx(data, name=name, expected_magic=IDX_IMAGES_MAGIC)
    return images[:, None, :, :]


def parse_idx_labels(data: bytes, *, name: str = "<bytes>") -> np.ndarray:
    """Parse an IDX label file (magic ``0x00000801``) into ``int64 (N,)``.

    Args:
        data: The decompressed file content.
        name: File name for error messages.

    Returns:
        The labels.

    Raises:
        DataFormatError: See :func:`parse_idx`.
    """
    return parse_idx(data, name=name, expected_magic=IDX_LABELS_MAGIC).astype(np.int64)


def read_idx(path: str | os.PathLike, *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file from disk, raw or gzip-compressed (judged by content).

    Args:
        path: The file.
        expected_magic: See :func:`parse_idx`.

    Returns:
        The parsed array.

    Raises:
        DataFormatError: Corrupt gzip stream, or see :func:`parse_idx`.
    """
    return parse_idx(read_content(path), name=os.fspath(path), expected_magic=expected_magic)


def parse_cifar_batch(data: bytes, *, name: str = "<bytes>", num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Parse a CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes (R, G, B planes).

    Args:
        data: The batch file content (e.g. ``data_batch_1.bin``).
        name: File name for error messages.
        num_classes: Labels must be below this.

    Returns:
        ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``.

    Raises:
        DataFormatError: The size is not a whole number of records (truncated), or a label
            is out of range.
    """
    if len(data) == 0 or len(data) % CIFAR_RECORD_BYTES:
        raise DataFormatError(
            f"{name}: CIFAR-10 binary batch of {len(data)} bytes is not a whole number of "
            f"{CIFAR_RECORD_BYTES}-byte records (truncated or not a CIFAR-10 batch)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= num_classes:
        raise DataFormatError(f"{name}: label {int(labels.max())} out of range for {num_classes} classes")
    images = records[:, 1:].reshape(-1, *CIFAR_IMAGE_SHAPE).copy()
    return images, labels


def _bow_numbers(text: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataFormatError(f"{name}: no records")
    pairs = np.array([line.count(":") for line in lines], dtype=np.int64)
    with warnings.catch_warnings():  # a malformed tail only warns; the count check below catches it
        warnings.simplefilter("ignore", DeprecationWarning)
        numbers = np.fromstring(text.replace(":", " "), dtype=np.int64, sep=" ")
    if numbers.size != int((1 + 2 * pairs).sum()):
        raise DataFormatError(f"{name}: malformed svmlight data (expected 'rating id:count ...' per line)")
    return numbers, pairs


def parse_labeled_bow(
    data: bytes, *, vocab_size: int, binary: bool = True, name: str = "<bytes>"
) -> tuple[np.ndarray, np.ndarray]:
    """Parse aclImdb's ``labeledBow.feat`` (svmlight: ``rating id:count id:count ...``).

    Word ids are 0-based line numbers of ``imdb.vocab`` (sorted by frequency), so keeping
    the ids below ``vocab_size`` keeps the most frequent words.

    Args:
        data: The file content.
        vocab_size: Number of features: word ids ``0 .. vocab_size-1``; others are dropped.
        binary: True for presence (0/1), False for counts.
        name: File name for error messages.

    Returns:
        ``(features float32 (N, vocab_size), labels int64 (N,))``; label 1 for rating >= 7,
        0 for rating <= 4.

    Raises:
        DataFormatError: Malformed lines, negative ids or counts, or a neutral rating (5, 6).
    """
    try:
        numbers, pairs = _bow_numbers(data.decode("ascii"), name)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataFormatError(f"{name}: malformed svmlight data ({exc})") from exc
    starts = np.concatenate(([0], np.cumsum(1 + 2 * pairs)[:-1])).astype(np.int64)
    ratings = numbers[starts]
    is_pair = np.ones(numbers.size, dtype=bool)
    is_pair[starts] = False
    ids, counts = numbers[is_pair][0::2], numbers[is_pair][1::2]
    if ids.size and (ids.min() < 0 or counts.min() < 0):
        raise DataFormatError(f"{name}: negative word id or count")
    neutral = (ratings > 4) & (ratings < 7)
    if neutral.any():
        raise DataFormatError(f"{name}: rating {int(ratings[neutral][0])} is neither negative (<=4) nor positive (>=7)")
    rows = np.repeat(np.arange(pairs.size), pairs)
    keep = ids < vocab_size
    features = np.zeros((pairs.size, vocab_size), dtype=np.float32)
    features[rows[keep], ids[keep]] = 1.0 if binary else counts[keep]
    return features, (ratings >= 7).astype(np.int64)


def parse_vocab(data: bytes, *, name: str = "<bytes>") -> list[str]:
    """Parse a vocabulary file: one word per line, line number = word id.

    Args:
        data: The file content (UTF-8).
        name: File name for error messages.

    Returns:
        The words in id order.

    Raises:
        DataFormatError: The file is not UTF-8 or is empty.
    """
    try:
        words = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{name}: vocabulary is not UTF-8 ({exc})") from exc
    if not words:
        raise DataFormatError(f"{name}: vocabulary is empty")
    return words
