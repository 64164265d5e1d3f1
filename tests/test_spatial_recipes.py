"""Every recipe in recipes/spatial/ validates, names a real baseline, and runs for one epoch on a
small synthetic override (its report builds, with the spatial sections)."""

from pathlib import Path

import pytest

from wiringlab.cli import main
from wiringlab.experiment import expand, load_recipe

ROOT = Path(__file__).resolve().parents[1]
# multitask-* recipes read their datasets from multitask.tasks (tests/test_multitask_recipes.py)
SPATIAL = sorted(p for p in (ROOT / "recipes" / "spatial").glob("*.yaml") if not p.stem.startswith("multitask-"))


def test_there_is_a_recipe_per_question():
    assert len(SPATIAL) == 10


@pytest.mark.parametrize("path", SPATIAL, ids=lambda p: p.stem)
def test_recipe_validates_and_names_its_baseline_and_question(path):
    recipe = load_recipe(path)
    labels = {spec.label for spec in expand(recipe, str(path))}
    assert recipe.baseline in labels, (recipe.baseline, labels)
    assert recipe.question and path.read_text().startswith("# Question:")


@pytest.mark.parametrize("path", SPATIAL, ids=lambda p: p.stem)
def test_recipe_runs_one_epoch_on_synthetic(path, tmp_path):
    shape = [3, 32, 32] if "cifar10" in path.read_text() else [1, 28, 28]
    code = main(["run", str(path), "--out", str(tmp_path), "--epochs", "1", "--seeds", "0",
                 "--set", "data.name=synthetic",
                 "--set", f"data.options={{n_train: 128, n_test: 64, input_shape: {shape}}}",
                 "--set", "model.hidden=[32, 16]", "--set", "train.progress=false"])
    assert code == 0
    assert (tmp_path / "figures" / "spatial_kernels.png").is_file()
    assert "kernel_sparsity" in (tmp_path / "table.md").read_text()
