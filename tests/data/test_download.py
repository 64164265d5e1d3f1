"""Downloads with an injected pooch-style downloader: mirrors, hash checks, offline, fetch."""

from __future__ import annotations

import gzip

import pytest

from wiringlab.data import DataIntegrityError, DatasetError, DatasetNotFoundError, fetch_dataset, load_dataset
from wiringlab.data.spec import DatasetSpec, FileSpec
from wiringlab.data.loaders import load_idx


def served_gz(contents, mirror):
    return {mirror + f"{name}.gz": gzip.compress(data, mtime=0) for name, data in contents.items()}


def cache_files(cache):
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


def test_first_mirror_fails_second_serves(fake_idx, isolated_data_env, dfiles):
    _, contents = fake_idx
    downloader = dfiles.Served(served_gz(contents, dfiles.MIRRORS[1]))
    ds = load_dataset("fake-idx", allow_download=True, downloader=downloader)
    assert ds.x_train.shape == (6, 1, 4, 4)
    assert ds.source == str(isolated_data_env.cache / "fake-idx")
    first = downloader.calls[:2]
    assert first == [m + "train-images-idx3-ubyte.gz" for m in dfiles.MIRRORS]
    assert len(downloader.calls) == 8
    assert sorted(p.name for p in cache_files(isolated_data_env.cache)) == sorted(f"{n}.gz" for n in contents)
    # Second load is served from the cache without any download.
    again = load_dataset("fake-idx", allow_download=True, downloader=downloader)
    assert len(downloader.calls) == 8 and (again.x_train == ds.x_train).all()


def test_wrong_bytes_everywhere_is_an_integrity_error_and_leaves_nothing(fake_idx, isolated_data_env, dfiles):
    spec, contents = fake_idx
    wrong = {m + f"{n}.gz": b"definitely not the data" for m in dfiles.MIRRORS for n in contents}
    with pytest.raises(DataIntegrityError) as info:
        load_dataset("fake-idx", allow_download=True, downloader=dfiles.Served(wrong))
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert spec.files[0].archive_hash in message
    assert f"found md5:{dfiles.md5(b'definitely not the data')}" in message
    assert cache_files(isolated_data_env.cache) == []


def test_wrong_bytes_on_first_mirror_then_good_ones(fake_idx, isolated_data_env, dfiles):
    _, contents = fake_idx
    served = served_gz(contents, dfiles.MIRRORS[1])
    served.update({dfiles.MIRRORS[0] + f"{n}.gz": b"junk" for n in contents})
    ds = load_dataset("fake-idx", allow_download=True, downloader=dfiles.Served(served))
    assert ds.y_train.shape == (6,)
    assert all(p.suffix == ".gz" for p in cache_files(isolated_data_env.cache))


def test_archive_hash_ok_but_content_hash_wrong_is_refused(register, isolated_data_env, dfiles):
    payload = gzip.compress(b"some other content", mtime=0)
    fspec = FileSpec("train_images", "thing", "0" * 64, "thing.gz", f"md5:{dfiles.md5(payload)}")
    register(DatasetSpec("odd", "Odd", (fspec,), dfiles.MIRRORS, load_idx, ("a", "b"), "none"))
    with pytest.raises(DataIntegrityError, match="expected sha256:0{64}"):
        load_dataset("odd", allow_download=True, downloader=dfiles.Served({dfiles.MIRRORS[0] + "thing.gz": payload}))
    assert cache_files(isolated_data_env.cache) == []


def test_all_mirrors_unreachable(fake_idx, dfiles):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fake-idx", allow_download=True, downloader=dfiles.Served({}))
    message = str(info.value)
    for mirror in dfiles.MIRRORS:
        assert mirror + "train-images-idx3-ubyte.gz" in message
    assert "apt-get install dataset-fake" in message


def test_offline_env_refuses_to_download(fake_idx, dfiles):
    downloader = dfiles.Served(served_gz(fake_idx[1], dfiles.MIRRORS[0]))
    with pytest.raises(DatasetNotFoundError, match="downloads are off"):
        load_dataset("fake-idx", downloader=downloader)
    assert downloader.calls == []


def test_allow_download_false_refuses_even_when_env_allows(fake_idx, monkeypatch, dfiles):
    monkeypatch.delenv("WIRINGLAB_OFFLINE")
    downloader = dfiles.Served(served_gz(fake_idx[1], dfiles.MIRRORS[0]))
    with pytest.raises(DatasetNotFoundError):
        load_dataset("fake-idx", allow_download=False, downloader=downloader)
    assert downloader.calls == []


def test_env_online_downloads_when_allow_download_is_none(fake_idx, monkeypatch, dfiles):
    monkeypatch.setenv("WIRINGLAB_OFFLINE", "0")
    downloader = dfiles.Served(served_gz(fake_idx[1], dfiles.MIRRORS[0]))
    assert load_dataset("fake-idx", downloader=downloader).x_test.shape[0] == 3
    assert len(downloader.calls) == 4


def test_fetch_dataset_fills_the_cache(fake_idx, monkeypatch, isolated_data_env, dfiles):
    monkeypatch.delenv("WIRINGLAB_OFFLINE")
    downloader = dfiles.Served(served_gz(fake_idx[1], dfiles.MIRRORS[0]))
    folder = fetch_dataset("fake-idx", downloader=downloader)
    assert folder == isolated_data_env.cache / "fake-idx"
    assert len(list(folder.glob("*.gz"))) == 4
    assert fetch_dataset("fake-idx", downloader=downloader) == folder
    assert len(downloader.calls) == 4  # already cached: verified, not downloaded again


def test_fetch_dataset_refuses_offline_and_corrupt_cache(fake_idx, monkeypatch, isolated_data_env, dfiles):
    with pytest.raises(DatasetError, match="WIRINGLAB_OFFLINE"):
        fetch_dataset("fake-idx", downloader=dfiles.Served({}))
    monkeypatch.delenv("WIRINGLAB_OFFLINE")
    folder = isolated_data_env.cache / "fake-idx"
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"bad"))
    with pytest.raises(DataIntegrityError, match="train-images-idx3-ubyte.gz"):
        fetch_dataset("fake-idx", downloader=dfiles.Served({}))


def test_fetch_synthetic_has_nothing_to_fetch():
    with pytest.raises(DatasetError, match="nothing to fetch"):
        fetch_dataset("synthetic")


def test_fetch_dataset_finds_files_a_system_package_installed(fake_idx, isolated_data_env, dfiles):
    """As `dataset-fashion-mnist` puts them in /usr/share/datasets: fetch verifies them there
    and downloads nothing, offline too (it used to look only at the user cache)."""
    system = isolated_data_env.system / "fake-idx"
    system.mkdir(parents=True)
    for name, data in fake_idx[1].items():
        (system / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
    downloader = dfiles.Served({})
    assert fetch_dataset("fake-idx", downloader=downloader) == system
    assert downloader.calls == [] and not cache_files(isolated_data_env.cache)
