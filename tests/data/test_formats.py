"""Parsers over bytes: IDX, CIFAR-10 binary, svmlight bag-of-words, tar members."""

from __future__ import annotations

import gzip
import io
import tarfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp

from wiringlab.data import DataFormatError
from wiringlab.data.archives import read_content, read_tar_members
from wiringlab.data.formats import (
    CIFAR_RECORD_BYTES,
    IDX_IMAGES_MAGIC,
    parse_cifar_batch,
    parse_idx,
    parse_idx_images,
    parse_idx_labels,
    parse_labeled_bow,
    parse_vocab,
    read_idx,
)


def test_idx_images_get_a_channel_axis(dfiles):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    parsed = parse_idx_images(dfiles.idx_bytes(images))
    assert parsed.shape == (2, 1, 3, 4) and parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed[:, 0], images)
    assert parsed.flags.writeable


def test_idx_labels_are_int64(dfiles):
    labels = parse_idx_labels(dfiles.idx_bytes(np.array([3, 1, 4], dtype=np.uint8)))
    assert labels.dtype == np.int64 and labels.tolist() == [3, 1, 4]


def test_idx_big_endian_types(dfiles):
    values = np.array([[1, -2], [300000, 7]], dtype=np.int32)
    np.testing.assert_array_equal(parse_idx(dfiles.idx_bytes(values, type_code=0x0C)), values)
    floats = np.array([0.5, -1.25], dtype=np.float32)
    np.testing.assert_array_equal(parse_idx(dfiles.idx_bytes(floats, type_code=0x0D)), floats)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, max_side=5)))
def test_idx_round_trip(dfiles, array):
    np.testing.assert_array_equal(parse_idx(dfiles.idx_bytes(array)), array)


def test_read_idx_raw_and_gzip(tmp_path, dfiles):
    source = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    data = dfiles.idx_bytes(source)
    (tmp_path / "raw").write_bytes(data)
    (tmp_path / "packed.gz").write_bytes(gzip.compress(data))
    np.testing.assert_array_equal(read_idx(tmp_path / "raw"), source)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed.gz"), source)


def test_idx_wrong_magic_names_expected_and_found(dfiles):
    labels = dfiles.idx_bytes(np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="wrong IDX magic") as info:
        parse_idx(labels, name="train-images-idx3-ubyte", expected_magic=IDX_IMAGES_MAGIC)
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message
    assert "expected 0x00000803" in message and "found 0x00000801" in message


def test_idx_garbage_magic_and_gzip_hint(dfiles):
    with pytest.raises(DataFormatError, match="bad magic number"):
        parse_idx(b"\x12\x34\x56\x78" + bytes(8))
    with pytest.raises(DataFormatError, match="gzip-compressed"):
        parse_idx(gzip.compress(dfiles.idx_bytes(np.zeros(3, np.uint8))))


def test_idx_truncated(dfiles):
    data = dfiles.idx_bytes(np.zeros((5, 4, 4), dtype=np.uint8))
    with pytest.raises(DataFormatError, match="truncated") as info:
        parse_idx(data[:-7], name="t10k-images-idx3-ubyte")
    assert "t10k-images-idx3-ubyte" in str(info.value) and "(5, 4, 4)" in str(info.value)
    with pytest.raises(DataFormatError, match="truncated"):
        parse_idx(data[:10])
    with pytest.raises(DataFormatError, match="too short"):
        parse_idx(data[:2])


def test_idx_trailing_bytes(dfiles):
    with pytest.raises(DataFormatError, match="does not match its header"):
        parse_idx(dfiles.idx_bytes(np.zeros(3, np.uint8)) + b"\x00")


def test_truncated_gzip_is_a_format_error(tmp_path, dfiles):
    packed = gzip.compress(dfiles.idx_bytes(np.arange(100, dtype=np.uint8)))
    (tmp_path / "cut.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataFormatError, match="truncated or corrupt"):
        read_content(tmp_path / "cut.gz")


def cifar_record(label: int, seed: int) -> tuple[bytes, np.ndarray]:
    pixels = np.random.default_rng(seed).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    return bytes([label]) + pixels.tobytes(), pixels  # R plane, G plane, B plane, row-major


def test_cifar_batch_layout():
    (rec_a, pix_a), (rec_b, pix_b) = cifar_record(7, 0), cifar_record(2, 1)
    images, labels = parse_cifar_batch(rec_a + rec_b)
    assert images.shape == (2, 3, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [7, 2]
    np.testing.assert_array_equal(images[0], pix_a)
    np.testing.assert_array_equal(images[1], pix_b)


def test_cifar_batch_truncated_and_bad_label():
    record, _ = cifar_record(1, 0)
    with pytest.raises(DataFormatError, match="whole number of 3073-byte records"):
        parse_cifar_batch(record + record[:100], name="data_batch_1.bin")
    with pytest.raises(DataFormatError, match="out of range"):
        parse_cifar_batch(bytes([10]) + bytes(CIFAR_RECORD_BYTES - 1))


BOW = b"9 0:2 3:1 7:5\n2 1:1 2:3\n10 4:1\n"


def test_labeled_bow_binary():
    features, labels = parse_labeled_bow(BOW, vocab_size=4)
    assert features.dtype == np.float32 and features.shape == (3, 4)
    np.testing.assert_array_equal(features, [[1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0]])
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0, 1]


def test_labeled_bow_counts():
    features, _ = parse_labeled_bow(BOW, vocab_size=8, binary=False)
    assert features[0].tolist() == [2, 0, 0, 1, 0, 0, 0, 5]
    assert features[1].tolist() == [0, 1, 3, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"9 0:2 x:1\n", "malformed"),
        (b"9 0:2 3\n", "malformed"),
        (b"5 0:1\n", "neither negative"),
        (b"8 0:-1\n", "negative"),
        (b"\xff\xfe", "malformed"),
    ],
)
def test_labeled_bow_rejects_bad_input(data, match):
    with pytest.raises(DataFormatError, match=match):
        parse_labeled_bow(data, vocab_size=4, name="labeledBow.feat")


def test_vocab():
    assert parse_vocab(b"the\nand\na\n") == ["the", "and", "a"]
    with pytest.raises(DataFormatError, match="empty"):
        parse_vocab(b"")


def test_read_tar_members(tmp_path, dfiles):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(dfiles.tar_gz({"top/x.bin": b"xx", "top/y.txt": b"y", "top/other": b"o"}))
    assert read_tar_members(archive, ["top/x.bin", "top/y.txt"]) == {"top/x.bin": b"xx", "top/y.txt": b"y"}
    with pytest.raises(DataFormatError, match="lacks the member"):
        read_tar_members(archive, ["top/missing"])


def test_read_tar_members_refuses_links(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("top/vocab")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    (tmp_path / "evil.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(DataFormatError, match="unsafe archive member|not a regular file"):
        read_tar_members(tmp_path / "evil.tar.gz", ["top/vocab"])


def test_read_tar_members_corrupt_archive(tmp_path):
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tar at all")
    with pytest.raises(DataFormatError, match="cannot read the tar archive"):
        read_tar_members(tmp_path / "bad.tar.gz", ["x"])


@pytest.mark.parametrize("has_data_filter", [True, False])
def test_member_vetting_rejects_escapes(monkeypatch, has_data_filter):
    from wiringlab.data import archives  # noqa: PLC0415

    if not has_data_filter:  # Pythons before 3.10.12 / 3.11.4 lack tarfile.data_filter
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    assert archives._vet(tarfile.TarInfo("top/file"), "a.tar").name == "top/file"
    for name in ("../escape", "top/../../escape"):
        with pytest.raises(DataFormatError, match="unsafe archive member"):
            archives._vet(tarfile.TarInfo(name), "a.tar")
