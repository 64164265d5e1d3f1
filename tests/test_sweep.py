"""End-to-end sweeps on the offline synthetic dataset: files, resume, divergence."""

import csv
import json

import pytest
import torch

from wiringlab.cli import main
from wiringlab.experiment import expand, load_recipe, run_sweep
from wiringlab.report import build_report

RECIPE = """
name: tiny
question: does lr matter?
base:
  data: {name: synthetic, options: {n_train: 256, n_test: 128, input_shape: [16], num_classes: 3}}
  model: {kind: mlp, hidden: [16]}
  train: {epochs: 2, batch_size: 64, progress: false, optimizer: {name: sgd, lr: 0.1}}
grid:
  train.optimizer.lr: [0.1, 0.05]
seeds: [0, 1]
"""


@pytest.fixture
def recipe_path(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE)
    return path


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_sweep_writes_every_file(recipe_path, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(recipe_path), "--out", str(out)]) == 0
    for name in ["summary.csv", "table.md", "recipe.json", "figures/learning_curves.png"]:
        assert (out / name).exists(), name
    rows = _rows(out / "summary.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    for row in rows:
        run = out / "runs" / row["run_id"]
        for name in ["config.yaml", "metrics.jsonl", "summary.json", "weights.safetensors",
                     "effective_weights.safetensors"]:
            assert (run / name).exists(), name
        summary = json.loads((run / "summary.json").read_text())
        assert {"wiringlab", "torch", "device", "git_commit"} <= set(summary["provenance"])
        assert summary["provenance"]["data_source"] == "generated"  # synthetic; a file dataset names its folders
        assert summary["wall_time_s"] > 0 and summary["seed"] == int(row["seed"])
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    table = (out / "table.md").read_text()
    assert "lr=0.1" in table and "lr=0.05" in table and "| 2 |" in table
    assert "Compared with the baseline" in table


def test_resume_skips_finished_runs(recipe_path, tmp_path):
    out = tmp_path / "out"
    specs = expand(load_recipe(recipe_path))
    first = run_sweep(load_recipe(recipe_path), specs[:2], out)  # an "interrupted" sweep
    assert len(first.executed) == 2
    finished = {s.run_id: (out / "runs" / s.run_id / "summary.json").stat().st_mtime_ns for s in specs[:2]}
    second = run_sweep(load_recipe(recipe_path), specs, out)
    assert sorted(second.skipped) == sorted(finished)
    assert len(second.executed) == 2
    for run_id, mtime in finished.items():
        assert (out / "runs" / run_id / "summary.json").stat().st_mtime_ns == mtime
    build_report(out)
    rows = _rows(out / "summary.csv")
    assert sorted(r["run_id"] for r in rows) == sorted(s.run_id for s in specs)


def test_diverging_config_is_recorded_and_others_finish(recipe_path, tmp_path):
    out = tmp_path / "out"
    recipe = load_recipe(recipe_path)
    recipe.grid["train.optimizer.lr"] = [0.1, 1e12]
    specs = expand(recipe)
    result = run_sweep(recipe, specs, out / "mixed2")
    statuses = {s["label"]: s["status"] for s in result.summaries}
    assert statuses["lr=1e+12"] == "diverged" and statuses["lr=0.1"] == "completed"
    build_report(out / "mixed2")
    assert "diverged" in (out / "mixed2" / "table.md").read_text()


def test_same_seed_same_numbers_across_sweeps(recipe_path, tmp_path):
    a = run_sweep(load_recipe(recipe_path), expand(load_recipe(recipe_path)), tmp_path / "a")
    b = run_sweep(load_recipe(recipe_path), expand(load_recipe(recipe_path)), tmp_path / "b")
    assert [s["final"] for s in a.summaries] == [s["final"] for s in b.summaries]


def test_workers_give_the_same_numbers(recipe_path, tmp_path):
    serial = run_sweep(load_recipe(recipe_path), expand(load_recipe(recipe_path)), tmp_path / "a")
    pooled = run_sweep(load_recipe(recipe_path), expand(load_recipe(recipe_path)), tmp_path / "b", workers=2)
    key = lambda s: s["run_id"]  # noqa: E731
    for x, y in zip(sorted(serial.summaries, key=key), sorted(pooled.summaries, key=key)):
        # one thread per worker may sum matmuls in another order: equal to float tolerance
        assert x["final"]["train_loss"] == pytest.approx(y["final"]["train_loss"], rel=1e-4)


def test_dry_run_and_bad_recipe_exit_codes(recipe_path, tmp_path, capsys):
    assert main(["run", str(recipe_path), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "4 runs" in capsys.readouterr().out
    assert not (tmp_path / "o" / "runs").exists()
    assert main(["run", str(recipe_path), "--set", "train.epochz=3"]) == 2
    assert "(--set train.epochz): train.epochz: Extra inputs" in capsys.readouterr().err  # blames the flag
    for bad, named in ((["--seeds", "0", "a"], "--seeds: 'a' is not an integer"),
                       (["--set", "model.hidden=[8, 8"], "not valid YAML"),
                       (["--seeds", ","], "needs at least one seed")):
        assert main(["run", str(recipe_path), "--dry-run", *bad]) == 2  # an error line, not a traceback
        assert named in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_a_device_this_machine_lacks_is_one_error_before_anything_runs(recipe_path, tmp_path, capsys):
    assert main(["run", str(recipe_path), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert "train.device: device 'cuda' requested but CUDA is not available" in capsys.readouterr().err
    assert not list((tmp_path / "o").glob("runs/*/summary.json"))  # no run was recorded as failed


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_a_refused_command_leaves_a_finished_folder_as_it_was(recipe_path, tmp_path):
    """recipe.json names the runs the report shows: a command refused up front (here a device
    this machine lacks, which changes every run id) must not rewrite it."""
    out = tmp_path / "o"
    assert main(["run", str(recipe_path), "--out", str(out), "--epochs", "1"]) == 0
    before = (out / "recipe.json").read_bytes()
    assert main(["run", str(recipe_path), "--out", str(out), "--epochs", "1", "--device", "cuda"]) == 2
    assert (out / "recipe.json").read_bytes() == before
    assert len(_rows(out / "summary.csv")) == 4


def test_an_executors_own_refusal_also_leaves_the_folder_as_it_was(recipe_path, tmp_path):
    from wiringlab.experiment import ConfigError
    from wiringlab.experiment.executors import RayExecutor
    from wiringlab.experiment.recipe import parse_override

    out = tmp_path / "o"
    assert main(["run", str(recipe_path), "--out", str(out), "--epochs", "1"]) == 0
    before = (out / "recipe.json").read_bytes()
    recipe = load_recipe(recipe_path)
    specs = expand(recipe, overrides=[parse_override("train.device=cuda:1")])  # Ray assigns GPUs itself
    with pytest.raises(ConfigError, match="Ray assigns each task its GPU"):
        run_sweep(recipe, specs, out, executor=RayExecutor())
    assert (out / "recipe.json").read_bytes() == before


def test_the_lock_file_takes_the_umask_like_every_results_file(tmp_path):
    import os
    import stat

    from wiringlab.experiment.folder_lock import LOCK_NAME, folder_lock

    with folder_lock(tmp_path):
        pass
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / LOCK_NAME).stat().st_mode) == 0o666 & ~umask


def test_a_second_sweep_into_a_busy_folder_is_refused(recipe_path, tmp_path, capsys):
    from wiringlab.experiment.errors import FolderBusyError
    from wiringlab.experiment.folder_lock import folder_lock

    out = tmp_path / "o"
    out.mkdir()
    specs = expand(load_recipe(recipe_path))
    with folder_lock(out):  # another sweep holds the folder (flock locks each open of the file)
        with pytest.raises(FolderBusyError, match=r"another wiringlab sweep \(pid \d+ on [^)]+\)"):
            run_sweep(load_recipe(recipe_path), specs, out)
        assert main(["run", str(recipe_path), "--out", str(out)]) == 2
        assert "is being written by another wiringlab sweep" in capsys.readouterr().err
    assert not (out / "runs").exists() and not (out / "recipe.json").exists()
    assert len(run_sweep(load_recipe(recipe_path), specs, out).executed) == 4  # released: it runs now


def test_stacked_sweep_matches_unstacked(recipe_path, tmp_path):
    from wiringlab.experiment.grouping import group_runs

    specs = expand(load_recipe(recipe_path))
    assert [len(g) for g in group_runs(specs)] == [4]  # lr and seed are member values: one stack
    stacked = run_sweep(load_recipe(recipe_path), specs, tmp_path / "a", stack=True)
    alone = run_sweep(load_recipe(recipe_path), specs, tmp_path / "b", stack=False)
    for x, y in zip(stacked.summaries, alone.summaries):
        assert x["run_id"] == y["run_id"]
        assert x["final"]["train_loss"] == pytest.approx(y["final"]["train_loss"], rel=1e-4)
        assert x["final"]["test_acc"] == pytest.approx(y["final"]["test_acc"], abs=1 / 128 + 1e-9)


def test_spread_groups_gives_every_worker_a_group_and_keeps_every_run_once():
    from wiringlab.experiment.grouping import spread_groups

    runs = [f"r{i}" for i in range(9)]
    assert [len(g) for g in spread_groups([runs], 2)] == [5, 4]
    assert [len(g) for g in spread_groups([runs], 4)] == [3, 2, 2, 2]
    assert [len(g) for g in spread_groups([runs[:3], runs[3:6], runs[6:]], 2)] == [3, 3, 3]  # enough already
    assert spread_groups([["a"], ["b"]], 8) == [["a"], ["b"]]  # single runs are not split further
    for workers in range(1, 12):
        spread = spread_groups([runs[:7], runs[7:]], workers)
        assert [r for g in spread for r in g] == runs and len(spread) >= min(workers, 9)


def test_more_samples_than_the_dataset_has_is_one_error_before_anything_runs(recipe_path, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", str(recipe_path), "--out", str(out), "--set", "data.n_train=300"]) == 2  # 256 exist
    assert "data.n_train=300, but 'synthetic' has 256 train samples" in capsys.readouterr().err
    assert not out.exists()  # a refused command into a new folder leaves none behind
    from wiringlab.data import load_dataset
    from wiringlab.engine import to_device_data
    from wiringlab.experiment.config import DataConfig

    dataset = load_dataset("synthetic", n_train=64, n_test=32, input_shape=[4], num_classes=2)
    with pytest.raises(ValueError, match="data.n_test=33, but 'synthetic' has 32 test samples"):
        to_device_data(dataset, DataConfig(name="synthetic", n_test=33), torch.device("cpu"))
    assert len(to_device_data(dataset, DataConfig(name="synthetic", n_test=32), torch.device("cpu")).x_test) == 32


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_workers_below_one_is_a_usage_error(recipe_path, tmp_path, capsys, workers):
    with pytest.raises(SystemExit) as info:
        main(["run", str(recipe_path), "--out", str(tmp_path / "o"), "--workers", workers, "--dry-run"])
    assert info.value.code == 2
    assert "is not a count of processes: give 1 or more" in capsys.readouterr().err


def test_the_closing_line_counts_diverged_runs(recipe_path, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", str(recipe_path), "--out", str(out), "--set", "train.optimizer.lr=1e12"]) == 0
    assert "2 runs trained, 0 already finished, 2 diverged, 0 failed" in capsys.readouterr().out
    # the question as written says nothing of the override: table.md and compare show it
    assert "**Run with overrides.** `train.optimizer.lr=\"1e12\"`" in (out / "table.md").read_text()
    assert main(["compare", str(out), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| `train.optimizer.lr=\"1e12\"` | 2 (0) |" in printed
    assert "| – (2 diverged) | – (2 diverged) |" in printed  # not an empty table


@pytest.mark.parametrize("override, named", [
    ("model={kind: lenet}", "running it on 'synthetic' inputs of shape (16,), failed"),
    ("snapshots={layers: [7]}", "snapshot"),
])
def test_a_model_that_cannot_run_on_its_data_is_one_error_before_anything_runs(recipe_path, tmp_path, capsys,
                                                                                 override, named):
    out = tmp_path / "o"
    assert main(["run", str(recipe_path), "--out", str(out), "--set", override]) == 2
    err = capsys.readouterr().err
    assert named in err and "lr=0.1" in err
    assert not (out / "runs").exists() and not (out / "recipe.json").exists()


def test_the_report_reads_folders_whose_runs_asked_for_more_samples_than_the_data_has(recipe_path, tmp_path):
    """Runs made before n_train was checked trained on the capped size; their folders still report."""
    import yaml

    out = tmp_path / "o"
    assert main(["run", str(recipe_path), "--out", str(out), "--epochs", "1"]) == 0
    for path in out.glob("runs/*/config.yaml"):  # as an older wiringlab recorded them (256 exist)
        config = yaml.safe_load(path.read_text())
        config["data"]["n_train"] = 300
        path.write_text(yaml.safe_dump(config))
    assert main(["report", str(out)]) == 0
    assert (out / "similarity.csv").exists()


def test_a_run_trained_alone_records_where_its_data_came_from(recipe_path, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(recipe_path), "--out", str(out), "--no-stack", "--seeds", "0"]) == 0
    summaries = [json.loads(p.read_text()) for p in (out / "runs").glob("*/summary.json")]
    assert summaries and all(s["provenance"]["stack_size"] == 1 for s in summaries)
    assert {s["provenance"]["data_source"] for s in summaries} == {"generated"}


def test_one_members_fault_fails_only_that_run_of_a_stack(recipe_path, tmp_path, monkeypatch):
    """A stack that raises is trained again one run at a time, so a fault of one member (here
    its callback) does not fail its neighbours, now or on every resume."""
    from wiringlab.engine.callbacks import Callback
    from wiringlab.experiment import execute, grouping

    class Broken(Callback):
        def on_epoch_end(self, state):
            raise RuntimeError("this member's callback is broken")

    real = execute.build_callbacks

    def build_callbacks(config, model):
        broken = config.seed == 1 and config.train.optimizer.lr == 0.05
        return [*real(config, model), Broken()] if broken else real(config, model)

    monkeypatch.setattr(execute, "build_callbacks", build_callbacks)
    monkeypatch.setattr(grouping, "build_callbacks", build_callbacks)
    recipe_path.write_text(RECIPE.replace("hidden: [16]}", "hidden: [16], activation: tanh}"))  # tanh: stacked
    specs = expand(load_recipe(recipe_path))
    assert [len(g) for g in grouping.group_runs(specs)] == [4]
    result = run_sweep(load_recipe(recipe_path), specs, tmp_path / "o", stack=True)
    status = {(s["seed"], s["axes"]["train.optimizer.lr"]): s["status"] for s in result.summaries}
    assert status == {(0, 0.1): "completed", (1, 0.1): "completed", (0, 0.05): "completed", (1, 0.05): "failed"}


def test_a_stack_member_that_cannot_be_saved_is_recorded_failed_not_raised(recipe_path, tmp_path, monkeypatch):
    from wiringlab.experiment import grouping

    real = grouping.finish_run

    def finish_run(spec, *args, **kwargs):
        if spec.seed == 1 and spec.config.train.optimizer.lr == 0.1:
            raise OSError("disk full")
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(grouping, "finish_run", finish_run)
    recipe_path.write_text(RECIPE.replace("hidden: [16]}", "hidden: [16], activation: tanh}"))
    result = run_sweep(load_recipe(recipe_path), expand(load_recipe(recipe_path)), tmp_path / "o", stack=True)
    failed = [s for s in result.summaries if s["status"] == "failed"]
    assert len(result.summaries) == 4 and len(failed) == 1 and "disk full" in failed[0]["error"]


def test_a_dead_worker_fails_only_the_runs_of_its_group_that_had_not_finished(recipe_path, tmp_path):
    """A pool worker killed (OOM) mid-group: members it had finished keep their summaries (they
    were overwritten as failed and trained again on the next run)."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from wiringlab.experiment.executors import PoolExecutor
    from wiringlab.experiment.store import RunFolder

    specs = expand(load_recipe(recipe_path), str(recipe_path))[:2]
    done = {"run_id": specs[0].run_id, "label": specs[0].label, "seed": specs[0].seed, "status": "completed",
            "final": {"test_acc": 0.5}}
    RunFolder(tmp_path / "runs" / specs[0].run_id).write_summary(done)
    future = Future()
    future.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
    (result,) = list(PoolExecutor._collect({future: (specs, 0.0)}, tmp_path))
    assert [s["status"] for s in result] == ["completed", "failed"]
    assert RunFolder(tmp_path / "runs" / specs[0].run_id).read_summary()["status"] == "completed"
    assert "BrokenProcessPool" in RunFolder(tmp_path / "runs" / specs[1].run_id).read_summary()["error"]


def test_the_report_is_built_under_the_folders_lock(recipe_path, tmp_path, capsys):
    """A second sweep started while the first builds its report is refused, instead of rewriting
    recipe.json under it (the report was built after the lock was let go)."""
    from wiringlab.experiment.errors import FolderBusyError
    from wiringlab.experiment.folder_lock import folder_lock

    seen = []

    def during_report(folder):
        with pytest.raises(FolderBusyError):
            with folder_lock(folder):
                pass
        seen.append(folder)

    recipe = load_recipe(recipe_path)
    out = tmp_path / "locked"
    run_sweep(recipe, expand(recipe, str(recipe_path)), out, then=during_report)
    assert seen == [out]
    assert main(["run", str(recipe_path), "--out", str(out)]) == 0 and "| lr=0.1 |" in capsys.readouterr().out
