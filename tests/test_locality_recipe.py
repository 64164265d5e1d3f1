"""The locality recipe validates, pairs every treatment with the control, and runs for one epoch on
a small synthetic override with its clustering report section and figures."""

from pathlib import Path

import pytest
import scipy.stats
import torch

from wiringlab.analysis.clustering import spatial_variance
from wiringlab.cli import main
from wiringlab.data import load_dataset
from wiringlab.engine import to_device_data
from wiringlab.experiment import expand, load_recipe
from wiringlab.experiment.config import RunConfig
from wiringlab.experiment.store import RunFolder
from wiringlab.report.locality import network_activations

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


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    out = tmp_path_factory.mktemp("locality")
    code = main(["run", str(RECIPE), "--out", str(out), "--epochs", "1", "--seeds", "0", "1",
                 "--set", "data.name=synthetic",
                 "--set", "data.options={n_train: 128, n_test: 60, input_shape: [1, 16, 16], num_classes: 3}",
                 "--set", "model.hidden=[24, 20]", "--set", "model.prior_block.width=16",
                 "--set", "train.progress=false"])
    assert code == 0
    return out


def test_recipe_runs_one_epoch_and_reports_clustering(one_epoch):
    tmp_path = one_epoch
    table = (tmp_path / "table.md").read_text()
    assert "## Locality prior: spatial clustering" in table and table.count("across seeds (n=2 vs 2)") == 3
    for p in ("0.5", "1.0", "2.0"):  # every treatment paired with the control
        assert f'### `layer={{"type":"locality","p":{p}}}` vs `layer={{"type":"linear"}}`' in table
    assert "conv0 = `features.0`, conv1 = `features.4`, linear0 = " in table  # LeNet: channels are units too
    assert "A convolution's units are its output channels" in table
    for name in ("locality_prior", "locality_variance", "locality_maps_0", "locality_maps_2"):
        assert (tmp_path / "figures" / f"{name}.png").is_file()


def _mean_variance(out_dir, summary, config) -> float:
    """One network's mean per-image spatial variance at its prior block's output, computed here."""
    dataset = load_dataset(config.data.name, **config.data.options)
    data = to_device_data(dataset, config.data, torch.device("cpu"))
    net = network_activations(out_dir, summary, config, data)
    return float(spatial_variance(net["output"]).nanmean())


def test_the_clustering_table_compares_treatment_with_control(one_epoch):
    """The numbers of one pair's table, recomputed from the run folders: V of the treatment
    and of the control per seed, and Welch's t across seeds (scipy's, as an oracle)."""
    summaries = [RunFolder(d).read_summary() for d in sorted((one_epoch / "runs").iterdir())]
    configs = {s["run_id"]: RunConfig.model_validate(RunFolder(one_epoch / "runs" / s["run_id"]).read_config())
               for s in summaries}
    arm = {"treatment": 'layer={"type":"locality","p":1.0}', "control": 'layer={"type":"linear"}'}
    means = {name: {s["seed"]: _mean_variance(one_epoch, s, configs[s["run_id"]])
                    for s in summaries if s["label"] == label} for name, label in arm.items()}
    table = (one_epoch / "table.md").read_text()
    section = table.split(f'### `{arm["treatment"]}` vs `{arm["control"]}`')[1].split("###")[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:6]]
            for line in section.splitlines() if line.startswith("| ")}
    for seed in (0, 1):
        v_treatment, v_control = (float(x) for x in rows[str(seed)][:2])
        assert v_treatment == pytest.approx(means["treatment"][seed], rel=1e-3)
        assert v_control == pytest.approx(means["control"][seed], rel=1e-3)
    assert means["treatment"] != means["control"]
    welch = scipy.stats.ttest_ind(list(means["treatment"].values()), list(means["control"].values()),
                                  equal_var=False)
    across = rows["across seeds (n=2 vs 2)"]
    assert float(across[2]) == pytest.approx(welch.statistic, rel=1e-2)
    assert float(across[3]) == pytest.approx(welch.pvalue, rel=1e-2)


SPARSE_BLOCK = """
name: sparseblock
base:
  data: {name: synthetic, options: {n_train: 192, n_test: 64, input_shape: [16], num_classes: 3}}
  model: {kind: mlp, hidden: [12], prior_block: {width: 9, layer: {type: linear}}}
  train: {epochs: 1, batch_size: 64, progress: false}
grid:
  model.prior_block.layer: [{type: linear}, {type: sparse, epsilon: 3}]
seeds: [0, 1]
"""


def test_a_prior_block_without_a_kernel_gets_the_clustering_report_without_a_prior_figure(tmp_path):
    """A sparse prior block is a treatment with no kernel to draw: the report used to crash
    after training (no table.md, exit 1)."""
    from helpers import run_recipe

    _, out = run_recipe(tmp_path, SPARSE_BLOCK)
    table = (out / "table.md").read_text()
    assert "locality_variance.png" in table
    assert not (out / "figures" / "locality_prior.png").exists()
