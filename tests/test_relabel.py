"""A finished run is not trained again when only its label changes (a value spelled another
way, an axis collapsed by --set), and one folder holds one recipe's results."""

import json

import pytest

from wiringlab.cli import main

RECIPE = """
name: relabel
base:
  data: {name: synthetic, options: {n_train: 128, n_test: 64, input_shape: [8], num_classes: 3}}
  model: {hidden: [8]}
  train: {epochs: 1, batch_size: 64, progress: false}
grid:
  train.optimizer.weight_decay: [0.0, WD]
seeds: [0, 1]
"""


def _summaries(out):
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/summary.json")}


@pytest.fixture
def first_run(tmp_path):
    path, out = tmp_path / "r.yaml", tmp_path / "out"
    path.write_text(RECIPE.replace("WD", "1e-3"))  # YAML reads 1e-3 as a string: label weight_decay="1e-3"
    assert main(["run", str(path), "--out", str(out)]) == 0
    return path, out, _summaries(out)


def test_a_value_spelled_another_way_reuses_the_finished_runs(first_run, capsys):
    path, out, before = first_run
    path.write_text(RECIPE.replace("WD", "0.001"))
    assert main(["run", str(path), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("done ") == 4 and "(finished as weight-decay-1e-3-s0-" in printed
    assert main(["run", str(path), "--out", str(out)]) == 0
    assert "0 runs trained, 4 already finished" in capsys.readouterr().out
    after = _summaries(out)
    assert len(after) == 4 and not any("1e-3" in run_id for run_id in after)  # renamed, not copied
    moved = [s for s in after.values() if s["label"] == "weight_decay=0.001"]
    assert len(moved) == 2 and all(s["run_id"].startswith("weight-decay-0.001-s") for s in moved)
    old = {s["seed"]: s["final"] for s in before.values() if s["label"] == 'weight_decay="1e-3"'}
    assert {s["seed"]: s["final"] for s in moved} == old  # the same runs, not retrained
    table = (out / "table.md").read_text()
    assert "| weight_decay=0.001 | 2 |" in table and "another invocation" not in table


def test_an_axis_collapsed_by_set_reuses_the_finished_runs(first_run, capsys):
    path, out, before = first_run
    assert main(["run", str(path), "--out", str(out), "--set", "train.optimizer.weight_decay=0"]) == 0
    assert "0 runs trained, 2 already finished" in capsys.readouterr().out
    assert sorted(s["label"] for s in _summaries(out).values()).count("base") == 2


def test_a_different_config_is_still_trained(first_run, capsys):
    path, out, _ = first_run
    path.write_text(RECIPE.replace("WD", "0.002"))
    assert main(["run", str(path), "--out", str(out)]) == 0
    assert "2 runs trained, 2 already finished" in capsys.readouterr().out


def test_another_recipe_into_the_folder_is_refused_and_changes_nothing(first_run, capsys):
    path, out, before = first_run
    recipe_json = (out / "recipe.json").read_text()
    path.write_text(RECIPE.replace("WD", "0.002").replace("name: relabel", "name: other"))
    assert main(["run", str(path), "--out", str(out), "--dry-run"]) == 2  # the dry run refuses it too
    assert main(["run", str(path), "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("holds the results of recipe 'relabel'") == 2
    assert (out / "recipe.json").read_text() == recipe_json and _summaries(out).keys() == before.keys()


def test_an_adoption_interrupted_before_its_rename_is_finished_next_time(first_run, monkeypatch):
    from pathlib import Path

    from wiringlab.experiment import expand, load_recipe
    from wiringlab.experiment.sweep import adoptable_runs, adopt_runs

    path, out, _ = first_run
    path.write_text(RECIPE.replace("WD", "0.001"))
    specs = expand(load_recipe(path), str(path))
    found = adoptable_runs(specs, out)
    assert len(found) == 2

    def interrupted(self, target):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Path, "rename", interrupted)
        with pytest.raises(KeyboardInterrupt):
            adopt_runs(found, specs)
    assert len(adoptable_runs(specs, out)) == 2  # still found by what it trained
    adopt_runs(adoptable_runs(specs, out), specs)
    relabelled = [s for s in _summaries(out).values() if s["label"] == "weight_decay=0.001"]
    assert sorted(s["run_id"] for s in relabelled) == sorted(found)
    assert all((out / "runs" / s["run_id"]).is_dir() for s in relabelled)
