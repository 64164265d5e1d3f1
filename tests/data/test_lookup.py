"""Where files are looked for, in which order, and how present files are verified."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from wiringlab.data import DataIntegrityError, DatasetNotFoundError, load_dataset, sources
from wiringlab.data.sources import is_offline, lookup_places, user_cache_dir


def test_user_cache_dir_precedence(tmp_path):
    assert user_cache_dir({"WIRINGLAB_CACHE": str(tmp_path / "c")}) == tmp_path / "c"
    assert user_cache_dir({"XDG_CACHE_HOME": str(tmp_path / "x")}) == tmp_path / "x" / "wiringlab"
    assert user_cache_dir({}) == Path.home() / ".cache" / "wiringlab"


@pytest.mark.parametrize(
    ("allow", "env", "offline"),
    [
        (None, {}, False),
        (None, {"WIRINGLAB_OFFLINE": "1"}, True),
        (None, {"WIRINGLAB_OFFLINE": "0"}, False),
        (False, {}, True),
        (True, {"WIRINGLAB_OFFLINE": "1"}, False),
    ],
)
def test_is_offline(allow, env, offline):
    assert is_offline(allow, env) is offline


def test_lookup_places_order(tmp_path):
    env = {"WIRINGLAB_DATA": str(tmp_path / "d1") + ":" + str(tmp_path / "d2"), "WIRINGLAB_CACHE": str(tmp_path / "c")}
    places = lookup_places("ds", tmp_path / "p", env=env, system_dirs=[tmp_path / "s1", tmp_path / "s2"])
    assert [p.folder for p in places] == [
        tmp_path / "p",
        tmp_path / "p" / "ds",
        tmp_path / "d1" / "ds",
        tmp_path / "d2" / "ds",
        tmp_path / "s1" / "ds",
        tmp_path / "s2" / "ds",
        tmp_path / "c" / "ds",
    ]
    assert [p.label for p in places][-1] == "user cache"


def test_lookup_order_explicit_then_env_then_system_then_cache(
    tmp_path, monkeypatch, fake_idx, isolated_data_env, dfiles
):
    _, contents = fake_idx
    explicit = dfiles.write_files(tmp_path / "explicit", contents)
    env_dir = dfiles.write_files(tmp_path / "env" / "fake-idx", contents)
    system = dfiles.write_files(isolated_data_env.system / "fake-idx", contents)
    cache = dfiles.write_files(isolated_data_env.cache / "fake-idx", contents)
    monkeypatch.setenv("WIRINGLAB_DATA", str(tmp_path / "env"))
    assert load_dataset("fake-idx", path=explicit).source == str(explicit)
    assert load_dataset("fake-idx").source == str(env_dir)
    monkeypatch.delenv("WIRINGLAB_DATA")
    assert load_dataset("fake-idx").source == str(system)
    monkeypatch.setattr(sources, "SYSTEM_DIRS", ())
    assert load_dataset("fake-idx").source == str(cache)


def test_explicit_path_may_be_a_root_holding_name(tmp_path, fake_idx, dfiles):
    _, contents = fake_idx
    folder = dfiles.write_files(tmp_path / "root" / "fake-idx", contents)
    assert load_dataset("fake-idx", path=tmp_path / "root").source == str(folder)


def test_raw_and_gzip_files_load_the_same(tmp_path, fake_idx, dfiles):
    _, contents = fake_idx
    raw = load_dataset("fake-idx", path=dfiles.write_files(tmp_path / "raw", contents, compress=False))
    packed = load_dataset("fake-idx", path=dfiles.write_files(tmp_path / "gz", contents))
    assert raw.x_train.shape == (6, 1, 4, 4) and raw.x_train.dtype.is_floating_point is False
    assert (raw.x_train == packed.x_train).all() and (raw.y_test == packed.y_test).all()
    # and both are what the files hold: IDX pixels after a 16-byte header, labels after 8
    pixels = np.frombuffer(contents["train-images-idx3-ubyte"][16:], dtype=np.uint8).reshape(6, 1, 4, 4)
    np.testing.assert_array_equal(packed.x_train.numpy(), pixels)
    labels = np.frombuffer(contents["t10k-labels-idx1-ubyte"][8:], np.uint8)
    np.testing.assert_array_equal(packed.y_test.numpy(), labels)
    assert raw.input_shape == (1, 4, 4) and raw.num_classes == 10


def test_recompressed_gzip_is_accepted(tmp_path, fake_idx, dfiles):
    """Only the decompressed content counts (Debian recompresses its .gz files)."""
    _, contents = fake_idx
    folder = tmp_path / "recompressed"
    folder.mkdir()
    for name, data in contents.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(data, compresslevel=1, mtime=12345))
    assert load_dataset("fake-idx", path=folder).x_test.shape == (3, 1, 4, 4)


def test_files_may_come_from_different_places(tmp_path, fake_idx, isolated_data_env, dfiles):
    _, contents = fake_idx
    names = sorted(contents)
    dfiles.write_files(tmp_path / "explicit", {n: contents[n] for n in names[:2]})
    dfiles.write_files(isolated_data_env.system / "fake-idx", {n: contents[n] for n in names[2:]})
    ds = load_dataset("fake-idx", path=tmp_path / "explicit")
    assert str(tmp_path / "explicit") in ds.source and str(isolated_data_env.system) in ds.source


def test_hash_mismatch_is_an_error_not_a_skip(tmp_path, monkeypatch, fake_idx, isolated_data_env, dfiles):
    spec, contents = fake_idx
    dfiles.write_files(isolated_data_env.system / "fake-idx", contents)  # a good copy later in the order
    bad = dict(contents)
    bad["train-labels-idx1-ubyte"] = contents["train-labels-idx1-ubyte"][:-1] + b"\x09"
    dfiles.write_files(tmp_path / "env" / "fake-idx", bad)
    monkeypatch.setenv("WIRINGLAB_DATA", str(tmp_path / "env"))
    with pytest.raises(DataIntegrityError) as info:
        load_dataset("fake-idx")
    message = str(info.value)
    expected = next(f.sha256 for f in spec.files if f.role == "train_labels")
    assert str(tmp_path / "env" / "fake-idx" / "train-labels-idx1-ubyte.gz") in message
    assert f"expected sha256:{expected}" in message
    assert f"found sha256:{dfiles.sha256(bad['train-labels-idx1-ubyte'])}" in message


def test_truncated_gzip_file_is_an_integrity_error(tmp_path, fake_idx, dfiles):
    _, contents = fake_idx
    folder = dfiles.write_files(tmp_path / "cut", contents)
    packed = (folder / "train-images-idx3-ubyte.gz").read_bytes()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(packed[:-20])
    with pytest.raises(DataIntegrityError, match="train-images-idx3-ubyte.gz.*expected sha256:[0-9a-f]{64}, found"):
        load_dataset("fake-idx", path=folder)


def test_a_file_that_cannot_be_read_is_an_integrity_error_naming_it(tmp_path, fake_idx, dfiles, monkeypatch):
    _, contents = fake_idx
    folder = dfiles.write_files(tmp_path / "eio", contents)
    real = sources.content_sha256

    def failing(path):
        if path.name.startswith("train-images"):
            raise OSError(5, "Input/output error")
        return real(path)

    monkeypatch.setattr(sources, "content_sha256", failing)
    with pytest.raises(DataIntegrityError, match=r"train-images-idx3-ubyte.gz could not be read: read error "
                                                  r"\(\[Errno 5\] Input/output error\)"):
        load_dataset("fake-idx", path=folder)


def test_raw_file_takes_precedence_over_gzip_in_one_folder(tmp_path, fake_idx, dfiles):
    _, contents = fake_idx
    folder = dfiles.write_files(tmp_path / "both", contents)
    dfiles.write_files(folder, contents, compress=False)
    assert load_dataset("fake-idx", path=folder).x_train.shape[0] == 6
    assert sources.check_file(folder, fake_idx[0].files[0]).path == folder / "train-images-idx3-ubyte"


def test_a_bad_raw_file_beside_a_good_gzip_does_not_block_it(tmp_path, fake_idx, dfiles, caplog):
    """An interrupted `gunzip -k` leaves a truncated raw file beside the good archive."""
    _, contents = fake_idx
    folder = dfiles.write_files(tmp_path / "both", contents)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(contents["t10k-labels-idx1-ubyte"][:-2])
    with caplog.at_level("WARNING"):
        assert load_dataset("fake-idx", path=folder).y_test.shape == (3,)
    assert "t10k-labels-idx1-ubyte: " in caplog.text and "using " + str(folder / "t10k-labels-idx1-ubyte.gz") \
        in caplog.text
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"corrupt")  # both bad: the first one is named
    with pytest.raises(DataIntegrityError, match=r"t10k-labels-idx1-ubyte is truncated"):
        load_dataset("fake-idx", path=folder)


def test_an_explicit_path_that_does_not_exist_is_an_error(tmp_path, fake_idx, isolated_data_env, dfiles):
    dfiles.write_files(isolated_data_env.system / "fake-idx", fake_idx[1])  # found elsewhere: still an error
    with pytest.raises(DatasetNotFoundError, match=r"the folder given as path, .*typo, does not exist"):
        load_dataset("fake-idx", path=tmp_path / "typo")


def test_an_explicit_path_expands_the_home_folder(tmp_path, fake_idx, monkeypatch, dfiles, caplog):
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = dfiles.write_files(tmp_path / "fm", fake_idx[1])
    assert load_dataset("fake-idx", path="~/fm").source == str(folder)
    train = {k: v for k, v in fake_idx[1].items() if k.startswith("train")}
    dfiles.write_files(tmp_path / "part", train)  # the rest comes from elsewhere: said
    monkeypatch.setenv("WIRINGLAB_DATA", str(tmp_path / "root"))
    dfiles.write_files(tmp_path / "root" / "fake-idx", fake_idx[1])
    with caplog.at_level("WARNING"):
        load_dataset("fake-idx", path="~/part")
    assert "the path given (~/part) lacks some files; they were found in " + str(tmp_path / "root" / "fake-idx") \
        in caplog.text


def test_missing_dataset_message(fake_idx, monkeypatch, isolated_data_env):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fake-idx")
    message = str(info.value)
    assert "apt-get install dataset-fake" in message
    assert "WIRINGLAB_DATA=<dir containing fake-idx/>" in message
    assert "--set data.path=DIR on the command line" in message  # a CLI user has no path= to pass
    assert "unset WIRINGLAB_OFFLINE" in message
    assert str(isolated_data_env.system / "fake-idx") in message
    assert str(isolated_data_env.cache / "fake-idx") in message
    assert "train-images-idx3-ubyte" in message
    assert "under these names: train-images-idx3-ubyte or train-images-idx3-ubyte.gz;" in message


def test_missing_dataset_message_when_downloads_forbidden_by_argument(fake_idx, monkeypatch):
    monkeypatch.delenv("WIRINGLAB_OFFLINE")
    with pytest.raises(DatasetNotFoundError, match="allow_download=True"):
        load_dataset("fake-idx", allow_download=False)


def test_real_fashion_mnist_message_names_apt_package(isolated_data_env):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert "Fashion-MNIST" in message and "apt-get install dataset-fashion-mnist" in message
    assert "WIRINGLAB_DATA" in message
