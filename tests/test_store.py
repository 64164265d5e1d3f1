"""The results store's small promises: atomic writes that leave nothing behind when they
fail, shared permissions, restartable run folders, and JSON that strict parsers read."""

import json
import os
import stat

import pytest

from wiringlab.experiment import store
from wiringlab.experiment.store import RunFolder, atomic_write_text, to_jsonable, write_json


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    atomic_write_text(path, "old")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_written_files_get_the_umask_permissions_not_mkstemps_0600(tmp_path):
    path = tmp_path / "table.md"
    atomic_write_text(path, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_restarting_a_run_clears_its_partial_metrics(tmp_path):
    """A failed run is retried on the next invocation: its epochs must not be appended twice."""
    folder = RunFolder(tmp_path / "run")
    folder.start({"seed": 0})
    folder.append_metrics({"epoch": 1, "train_loss": 1.0})
    assert len(folder.read_metrics()) == 1
    folder.start({"seed": 0})
    assert folder.read_metrics() == []


def test_an_unreadable_summary_is_not_a_finished_run(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.summary_path.write_text("{")  # truncated from outside: retrain rather than skip
    assert not folder.finished()
    write_json(folder.summary_path, {"status": "completed"})
    assert folder.finished()


def test_non_finite_floats_are_written_as_null_so_strict_json_parsers_read_them(tmp_path):
    values = {"a": float("inf"), "b": [float("-inf"), float("nan"), 1.5]}
    assert to_jsonable(values) == {"a": None, "b": [None, None, 1.5]}
    write_json(tmp_path / "s.json", {"loss": float("inf")})

    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    assert json.loads((tmp_path / "s.json").read_text(), parse_constant=no_constants) == {"loss": None}
