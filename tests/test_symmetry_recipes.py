"""The symmetry recipes validate as written and run end to end (one epoch, tiny synthetic
data), and their results folders carry the symmetry and similarity analyses."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from wiringlab.cli import main
from wiringlab.engine.snapshots import read_snapshots
from wiringlab.experiment import expand, load_recipe
from wiringlab.report import build_report

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes" / "symmetry").glob("*.yaml"))
SMALL = ["--epochs", "1", "--seeds", "0", "1", "--set", "data.name=synthetic",
         "--set", "data.options={n_train: 256, n_test: 128, input_shape: [1, 16, 16]}",
         "--set", "train.progress=false"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Each recipe run once (1 epoch, 2 seeds, tiny data) into its own results folder."""
    folders = {}
    for path in RECIPES:
        out = tmp_path_factory.mktemp(path.stem)
        assert main(["run", str(path), "--out", str(out), *SMALL]) == 0
        folders[path.stem] = out
    return folders


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_there_are_symmetry_recipes():
    assert {p.name for p in RECIPES} >= {"thesis.yaml", "cross_seed.yaml", "cross_seed_cnn.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_and_runs_one_epoch(path, results):
    recipe = load_recipe(path)
    specs = expand(recipe, str(path))
    assert len({s.label for s in specs}) >= 2 and len(recipe.seeds) >= 3
    out = results[path.stem]
    table = (out / "table.md").read_text()
    assert "## Similarity across seeds" in table and "### Permutation sensitivity" in table
    pairs = _rows(out / "similarity.csv")
    assert {r["layer"] for r in pairs} >= {"linear0", "all"} and len({r["group"] for r in pairs}) >= 2
    if specs[0].config.model.kind == "lenet":  # channels are aligned too
        assert {r["layer"] for r in pairs} >= {"conv0", "conv1"}
    for row in _rows(out / "permutation_sensitivity.csv"):  # plain layers: a consistent shuffle changes nothing
        if "exponential" not in row["label"]:
            assert float(row["acc_consistent"]) == float(row["accuracy"])
    if any(s.config.snapshots is not None for s in specs):
        assert "## Weight-space symmetry within each network" in table
        symmetry = _rows(out / "symmetry.csv")
        assert {int(r["epoch"]) for r in symmetry} == {0, 1}
        assert all(0.0 <= float(r["share_overlaps"]) <= 1.0 for r in symmetry)
        assert len(list((out / "figures").glob("symmetry_hist_*.png"))) >= 2
        assert len(list((out / "figures").glob("symmetry_scatter_*.png"))) >= 2
        for run in (out / "runs").iterdir():  # the last snapshot is the final model (stacked runs too)
            final = load_file(str(run / "effective_weights.safetensors"))
            _, last = read_snapshots(run / "snapshots")[-1]
            assert last and all(torch.equal(tensor, final[name]) for name, tensor in last.items())


def test_report_options_across_configs_and_off(results, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(results["cross_seed"], out)
    record = json.loads((out / "recipe.json").read_text())
    record["analysis"] = {"similarity": {"across_configs": True, "test_samples": 64}}
    (out / "recipe.json").write_text(json.dumps(record))
    build_report(out)
    groups = {r["group"] for r in _rows(out / "similarity.csv")}
    assert any(" vs " in g for g in groups)
    assert "first 64 test samples" in (out / "table.md").read_text()
    record["analysis"] = {"similarity": {"enabled": False}}
    (out / "recipe.json").write_text(json.dumps(record))
    build_report(out)
    assert "Similarity across seeds" not in (out / "table.md").read_text()


@pytest.mark.parametrize("text,key", [
    ("name: t\nanalysis: {similarity: {test_sample: 5}}\n", "analysis.similarity.test_sample"),
    ("name: t\nanalysis: {symmetry: {overlap_threshold: 1.5}}\n", "analysis.symmetry.overlap_threshold"),
    ("name: t\nbase: {data: {name: synthetic}, snapshots: {epochs: [-1]}}\n", "snapshots.epochs"),
])
def test_bad_analysis_and_snapshot_keys_are_named(text, key, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["run", str(path), "--dry-run", "--out", str(tmp_path / "o")]) == 2
    assert key in capsys.readouterr().err


def test_a_cnns_filters_get_the_within_network_analysis_too(tmp_path):
    """Snapshots of a LeNet hold its convolutions (hidden layers too), and the symmetry
    section reports their filters' pairwise cosines."""
    path = ROOT / "recipes" / "symmetry" / "cross_seed_cnn.yaml"
    assert main(["run", str(path), "--out", str(tmp_path), *SMALL, "--set", "model.channels=[3, 4]",
                 "--set", "snapshots={epochs: all, layers: hidden}"]) == 0
    rows = _rows(tmp_path / "symmetry.csv")
    assert {r["layer"] for r in rows} == {"conv0", "conv1", "linear0", "linear1"}
    assert {int(r["units"]) for r in rows if r["layer"] == "conv1"} == {4}
    assert "| conv0 | 3 | 0 |" in (tmp_path / "table.md").read_text()


def test_the_symmetry_table_shows_the_snapshots_its_caption_names():
    """The first two snapshots (init and epoch 1), a middle one and the last, as the caption says."""
    from wiringlab.report.symmetry_section import _table_epochs

    assert _table_epochs(list(range(21))) == [0, 1, 10, 20]
    assert _table_epochs([0, 5, 10]) == [0, 5, 10]
