"""User errors of the report commands: damaged files of a results folder, and an unknown
`compare --metric`, give an `error:` line that names the file or metric and the fix (exit
code 2), never a traceback, a silently skipped run or an empty table."""

import shutil

import pytest

from helpers import run_recipe
from wiringlab.cli import main
from wiringlab.experiment.store import RunFolder

RECIPE = """
name: tiny
base:
  data: {name: synthetic, options: {n_train: 128, n_test: 64, input_shape: [8], num_classes: 3}}
  model: {kind: mlp, hidden: [8], activation: tanh}
  train: {epochs: 2, batch_size: 64, progress: false, optimizer: {name: sgd, lr: 0.1}}
grid:
  train.optimizer.lr: [0.1, 0.05]
seeds: [0, 1]
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A results folder of 4 finished runs (2 configs x 2 seeds) and its recipe; read-only."""
    recipe, out = run_recipe(tmp_path_factory.mktemp("report-errors"), RECIPE)
    return out, recipe


@pytest.fixture
def results(finished, tmp_path):
    """A copy of `finished` to damage, its recipe, and its first run's folder."""
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    return out, finished[1], RunFolder(sorted((out / "runs").iterdir())[0])


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def _assert_names_run_fix(err: str, folder: RunFolder) -> None:
    assert f"delete that run's folder {folder.path}/ and rerun the recipe" in err
    assert "retrains only that run" in err


def test_truncated_summary_is_an_error_naming_the_file_and_the_fix(results, finished, capsys):
    out, _, folder = results
    text = folder.summary_path.read_text()
    folder.summary_path.write_text(text[: len(text) // 2])
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    err = _error(capsys)
    assert f"{folder.summary_path.resolve()}: not valid JSON" in err
    _assert_names_run_fix(err, RunFolder(folder.path.resolve()))
    assert main(["compare", str(out), str(finished[0])]) == 2  # compare reads the same summaries
    assert f"{folder.summary_path}: not valid JSON" in _error(capsys)


def test_truncated_metrics_line_of_a_finished_run_fails_report_and_run(results, capsys):
    out, recipe, folder = results
    lines = folder.metrics_path.read_text().splitlines(keepends=True)
    assert len(lines) == 2
    folder.metrics_path.write_text(lines[0] + lines[1][:20])  # a partial last line, no newline
    capsys.readouterr()
    for argv in (["report", str(out)], ["run", str(recipe), "--out", str(out)]):  # run: its report step
        assert main(argv) == 2
        err = _error(capsys)
        assert f"{folder.metrics_path.resolve()}: line 2 is truncated" in err
        _assert_names_run_fix(err, RunFolder(folder.path.resolve()))


def test_epochs_written_twice_by_two_processes_fail_the_report(results, capsys):
    """An orphaned worker and the resumed sweep both appending: the curves would be garbage."""
    out, _, folder = results
    lines = folder.metrics_path.read_text().splitlines(keepends=True)
    folder.metrics_path.write_text(lines[0] + lines[0] + lines[1] + lines[1])  # epochs 1, 1, 2, 2
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    err = _error(capsys)
    assert f"{folder.metrics_path.resolve()}: line 2 is epoch 1 where epoch 2 belongs (4 records: two processes" in err
    _assert_names_run_fix(err, RunFolder(folder.path.resolve()))


def test_the_fix_named_retrains_only_the_damaged_run(results):
    out, recipe, folder = results
    folder.metrics_path.write_text(folder.metrics_path.read_text()[:-5])
    others = {p: p.read_bytes() for p in (out / "runs").glob("*/summary.json") if p.parent != folder.path}
    assert main(["report", str(out)]) == 2
    shutil.rmtree(folder.path)
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    assert folder.summary_path.is_file() and len(folder.read_metrics()) == 2
    assert {p: p.read_bytes() for p in others} == others  # the other runs were not trained again


def test_a_bad_metrics_line_before_the_last_is_named_by_number(results, capsys):
    out, _, folder = results
    folder.metrics_path.write_text("{not json\n" + folder.metrics_path.read_text())
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    assert f"{folder.metrics_path.resolve()}: line 1 is not valid JSON" in _error(capsys)


def test_compare_unknown_metric_is_an_error_listing_the_known_ones(finished, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(finished[0], other)
    capsys.readouterr()
    assert main(["compare", str(finished[0]), str(other), "--metric", "test_ac", "--metric", "test_loss"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no empty table
    assert "unknown metric 'test_ac' (did you mean 'test_acc'?)" in captured.err
    assert "the folders have: test_acc, test_loss, train_acc, train_loss, best_test_acc, wall_time_s" in captured.err


def test_a_finished_run_missing_epochs_fails_the_report(results, capsys):
    """A metrics.jsonl cut after whole lines (a partial copy) parses, but averaging it would
    mix n across epochs under a legend that says n = all runs."""
    out, _, folder = results
    folder.metrics_path.write_text(folder.metrics_path.read_text().splitlines(keepends=True)[0])
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    err = _error(capsys)
    assert f"{folder.metrics_path.resolve()}: it holds 1 epochs, but the run's summary.json records 2" in err
    _assert_names_run_fix(err, RunFolder(folder.path.resolve()))
