"""The locality recipe validates, pairs every treatment with the control, and runs for one epoch on
a small synthetic override with its clustering report section and figures."""

from pathlib import Path

from wiringlab.cli import main
from wiringlab.experiment import expand, load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "locality" / "lenet-locality.yaml"


def test_recipe_validates_with_the_studys_settings():
    recipe = load_recipe(RECIPE)
    specs = expand(recipe, str(RECIPE))
    assert recipe.baseline in {s.label for s in specs} and RECIPE.read_text().startswith("# Question:")
    assert len(specs) == 12 and sorted({s.seed for s in specs}) == [0, 1, 2]
    layers = {s.config.model.prior_block.layer.model_dump_json() for s in specs}
    assert len(layers) == 4
    assert sorted(s.config.model.prior_block.layer.p for s in specs if s.config.model.prior_block.layer.type
                  == "locality")[::3] == [0.5, 1.0, 2.0]
    train = specs[0].config.train
    assert (train.epochs, train.batch_size, train.optimizer.name, train.optimizer.lr, train.optimizer.momentum,
            train.optimizer.weight_decay) == (10, 64, "rmsprop", 0.01, 0.5, 0.01)


def test_recipe_runs_one_epoch_and_reports_clustering(tmp_path):
    code = main(["run", str(RECIPE), "--out", str(tmp_path), "--epochs", "1", "--seeds", "0", "1",
                 "--set", "data.name=synthetic",
                 "--set", "data.options={n_train: 128, n_test: 60, input_shape: [1, 16, 16], num_classes: 3}",
                 "--set", "model.hidden=[24, 20]", "--set", "model.prior_block.width=16",
                 "--set", "train.progress=false"])
    assert code == 0
    table = (tmp_path / "table.md").read_text()
    assert "## Locality prior: spatial clustering" in table and table.count("across seeds (n=2 vs 2)") == 3
    for p in ("0.5", "1.0", "2.0"):  # every treatment paired with the control
        assert f'### `layer={{"type":"locality","p":{p}}}` vs `layer={{"type":"linear"}}`' in table
    for name in ("locality_prior", "locality_variance", "locality_maps_0", "locality_maps_2"):
        assert (tmp_path / "figures" / f"{name}.png").is_file()
