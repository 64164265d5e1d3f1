"""The SET recipes validate and run for two epochs (one evolution) on a small override,
and their report has the topology and overfitting sections."""

from pathlib import Path

import pytest

from wiringlab.cli import main
from wiringlab.experiment import expand, load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes" / "set").glob("*.yaml"))
SMALL = ["--set", "data.name=synthetic",
         "--set", "data.options={n_train: 256, n_test: 128, input_shape: [1, 28, 28]}",
         "--set", "train.progress=false"]


def test_there_are_set_recipes():
    assert {p.name for p in RECIPES} == {"regularisation.yaml", "comparison.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_with_its_full_grid(path):
    recipe = load_recipe(path)
    specs = expand(recipe, str(path))
    assert len(specs) == {"regularisation": 12, "comparison": 9}[path.stem]
    assert path.read_text().startswith("#") and "found" in path.read_text()  # states the finding


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_on_a_small_override(path, tmp_path, capsys):
    out = tmp_path / path.stem
    code = main(["run", str(path), "--out", str(out), "--epochs", "2", "--seeds", "0", *SMALL])
    assert code == 0, capsys.readouterr().err
    table = (out / "table.md").read_text()
    assert "## Input topology" in table and "## Overfitting view" in table
    for name in ["topology_heatmaps", "topology_radial", "topology_index"]:
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert len(list((out / "figures").glob("overfitting_*.png"))) == len(expand(load_recipe(path), seeds=[0]))
