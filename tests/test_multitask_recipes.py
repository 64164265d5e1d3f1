"""The multi-task recipes validate, name a real baseline, and run for one epoch on synthetic
datasets of two shapes (an image task and a vector task); the report gets its multi-task table."""

import json
from pathlib import Path

import pytest
from conftest import needs_fashion

from wiringlab.cli import main
from wiringlab.experiment import expand, load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes" / "spatial").glob("multitask-*.yaml"))


def test_the_study_recipe_and_its_offline_twin_exist():
    assert {p.stem for p in RECIPES} == {"multitask-scaffolding", "multitask-scaffolding-offline"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_with_three_conditions_and_two_tasks(path):
    recipe = load_recipe(path)
    specs = expand(recipe, str(path))
    assert recipe.baseline in {s.label for s in specs}
    assert {s.config.multitask.condition for s in specs} == {"separate", "no_spatial", "spatial_decay"}
    # the question is spatial_decay against standard multi-task learning: that is the comparison tested
    assert next(s for s in specs if s.label == recipe.baseline).config.multitask.condition == "no_spatial"
    assert all(len(s.config.multitask.tasks) == 2 for s in specs) and recipe.seeds == [0, 1, 2]
    assert path.read_text().startswith("# Question:")


def test_study_recipe_runs_one_epoch_on_two_synthetic_shapes(tmp_path):
    """Two seeds: the report's cross-seed sections must leave multitask runs alone."""
    path = ROOT / "recipes" / "spatial" / "multitask-scaffolding.yaml"
    image_task, vector_task = load_recipe(path).base["multitask"]["tasks"]
    code = main(["run", str(path), "--out", str(tmp_path), "--epochs", "1", "--seeds", "0", "1",
                 "--set", f"multitask.tasks.{image_task}.data={{name: synthetic, options: "
                          "{n_train: 96, n_test: 32, input_shape: [3, 32, 32]}}",
                 "--set", f"multitask.tasks.{vector_task}.data={{name: synthetic, options: "
                          "{n_train: 40, n_test: 32, input_shape: [50], num_classes: 2}}",
                 "--set", "multitask.width=16", "--set", "train.batch_size=32", "--set", "train.progress=false"])
    assert code == 0
    assert len(list((tmp_path / "runs").iterdir())) == 3 * 2
    table = (tmp_path / "table.md").read_text()
    assert "## Multi-task: accuracy per task" in table and f"share of separate: {vector_task}" in table
    assert f"test_acc/{image_task}" in table
    assert (tmp_path / "figures" / "multitask_kernels.png").is_file()
    assert (tmp_path / "figures" / "multitask_accuracy.png").is_file()


@needs_fashion
def test_offline_recipe_runs_one_epoch_on_its_real_datasets(tmp_path):
    """The offline twin as written (Fashion-MNIST and MNIST-1D, both local), on a slice of each."""
    path = ROOT / "recipes" / "spatial" / "multitask-scaffolding-offline.yaml"
    code = main(["run", str(path), "--out", str(tmp_path), "--epochs", "1", "--seeds", "0",
                 *[arg for task, n in (("fashion", 256), ("mnist1d", 128))
                   for arg in ("--set", f"multitask.tasks.{task}.data.n_train={n}",
                               "--set", f"multitask.tasks.{task}.data.n_test=128")],
                 "--set", "multitask.width=16", "--set", "train.progress=false"])
    assert code == 0
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/summary.json")]
    assert len(summaries) == 3 and all(s["status"] == "completed" for s in summaries)
    assert all(0 <= s["final"][f"test_acc/{task}"] <= 1 for s in summaries for task in ("fashion", "mnist1d"))
    (source,) = {s["provenance"]["data_source"] for s in summaries}  # each task's own folder
    assert source.startswith("fashion: /") and "; mnist1d: generated" in source
    table = (tmp_path / "table.md").read_text()
    assert "## Multi-task: accuracy per task" in table and "`train_loss` is the training objective" in table
    (run,) = [s for s in summaries if s["label"] == 'condition="no_spatial"']
    final = run["final"]  # what that sentence says of the two losses
    assert final["train_loss"] == pytest.approx(final["train_loss/fashion"] + final["train_loss/mnist1d"])
    assert final["test_loss"] == pytest.approx((final["test_loss/fashion"] + final["test_loss/mnist1d"]) / 2)
