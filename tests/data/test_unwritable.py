"""Folders that cannot be searched or written, killed downloads, and the messages that say the fix.

Tests run as root here, where permissions do not bind: the failing calls are injected."""

from __future__ import annotations

import gzip
import os
import pathlib
import socket
import subprocess
import sys

import pytest

from wiringlab.cli import main
from wiringlab.data import DataIntegrityError, DatasetError, DatasetOptionError, describe_dataset, load_dataset
from wiringlab.data import fetch_dataset, sources


def _served(contents, mirror):
    return {mirror + f"{name}.gz": gzip.compress(data, mtime=0) for name, data in contents.items()}


def test_a_folder_that_cannot_be_searched_is_a_dataset_error_naming_it(tmp_path, fake_idx, dfiles, monkeypatch):
    folder = dfiles.write_files(tmp_path / "locked" / "fake-idx", fake_idx[1])
    real = pathlib.Path.is_file

    def is_file(path):
        if path.parent == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(pathlib.Path, "is_file", is_file)
    with pytest.raises(DataIntegrityError, match=r"could not be read: read error \(\[Errno 13\] Permission denied"
                                                  r".*its folder and their permissions"):
        load_dataset("fake-idx", path=folder)
    assert "Loading now fails" in describe_dataset("fake-idx", path=folder)  # said, not a traceback


def test_a_read_only_cache_is_a_dataset_error_naming_the_fix(fake_idx, monkeypatch, isolated_data_env, dfiles):
    monkeypatch.delenv("WIRINGLAB_OFFLINE")
    (isolated_data_env.cache / "fake-idx").mkdir(parents=True)  # exists, but (as injected) not writable

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sources.tempfile, "TemporaryDirectory", refuse)
    with pytest.raises(DatasetError, match="cannot write to the download folder .*set WIRINGLAB_CACHE"):
        load_dataset("fake-idx", downloader=dfiles.Served(_served(fake_idx[1], dfiles.MIRRORS[0])))


def test_a_corrupt_cache_copy_that_cannot_be_deleted_says_so(fake_idx, monkeypatch, isolated_data_env, dfiles):
    monkeypatch.delenv("WIRINGLAB_OFFLINE")
    folder = isolated_data_env.cache / "fake-idx"
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"bad"))
    real = pathlib.Path.unlink

    def unlink(path, missing_ok=False):
        if path.parent == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, missing_ok=missing_ok)

    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    with pytest.raises(DatasetError, match="cannot delete .*train-images-idx3-ubyte.gz from the user cache"):
        fetch_dataset("fake-idx", downloader=dfiles.Served(_served(fake_idx[1], dfiles.MIRRORS[0])))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_downloads_folder_goes_on_the_next_lookup(fake_idx, isolated_data_env, dfiles):
    """Removed at once when its process on this host is gone, even when recent (the usual case:
    the user reruns right away, reading the files from elsewhere, and nothing downloads again)."""
    cache = isolated_data_env.cache / "fake-idx"
    host = socket.gethostname()
    dead = cache / f".download-{_dead_pid()}@{host}-abc"
    alive = cache / f".download-{os.getpid()}@{host}-def"
    elsewhere = cache / f".download-{_dead_pid()}@another-host-ghi"
    for staging in (dead, alive, elsewhere):
        staging.mkdir(parents=True)
        (staging / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
    dfiles.write_files(isolated_data_env.system / "fake-idx", fake_idx[1])
    load_dataset("fake-idx")  # read from the system folder: no download happens
    assert not dead.exists() and alive.is_dir() and elsewhere.is_dir()


def test_a_download_stages_under_its_process_and_host(fake_idx, monkeypatch, isolated_data_env, dfiles):
    monkeypatch.delenv("WIRINGLAB_OFFLINE")
    seen = []

    class Recording(dfiles.Served):
        def __call__(self, url, output_file, pooch, check_only=False):
            seen.append(pathlib.Path(output_file).parent.name)
            return super().__call__(url, output_file, pooch, check_only)

    load_dataset("fake-idx", downloader=Recording(_served(fake_idx[1], dfiles.MIRRORS[0])))
    assert seen and all(name.startswith(f".download-{os.getpid()}@{socket.gethostname()}-") for name in seen)


def test_a_gzip_that_does_not_decompress_names_the_files_own_hash(tmp_path, fake_idx, dfiles):
    folder = dfiles.write_files(tmp_path / "cut", fake_idx[1])
    cut = (folder / "train-images-idx3-ubyte.gz").read_bytes()[:-20]
    (folder / "train-images-idx3-ubyte.gz").write_bytes(cut)
    with pytest.raises(DataIntegrityError, match=rf"the file's own sha256:{dfiles.sha256(cut)}"):
        load_dataset("fake-idx", path=folder)


def test_a_file_given_as_path_is_said_to_be_a_file(tmp_path, fake_idx, dfiles):
    folder = dfiles.write_files(tmp_path / "files", fake_idx[1])
    with pytest.raises(DatasetError, match="is a file, not the folder that holds the files"):
        load_dataset("fake-idx", path=folder / "train-images-idx3-ubyte.gz")
    assert "is a file, not the folder" in describe_dataset("fake-idx", path=folder / "train-images-idx3-ubyte.gz")


def test_fetch_refuses_a_path_it_would_ignore(fake_idx, tmp_path, capsys):
    assert main(["datasets", "fetch", "fake-idx", "--path", str(tmp_path / "nowhere")]) == 2
    assert "datasets fetch takes no --path" in capsys.readouterr().err


def test_split_sizes_given_as_dataset_options_point_to_data_n_train():
    with pytest.raises(DatasetOptionError, match=r"set data\.n_train / data\.n_test"):
        load_dataset("mnist", n_train=100)
