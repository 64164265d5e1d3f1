"""The report's cross-seed similarity against a known answer: a second seed whose weights are
the first's with its hidden units permuted is the same network, so after alignment its weights
match exactly, its representations have CKA 1, and only the raw cosine sees a difference."""

import csv

import pytest
import torch

from helpers import run_recipe
from wiringlab.analysis.permutation import chain_unit_extras, chain_weights
from wiringlab.analysis.similarity import weight_similarity
from wiringlab.experiment.config import RunConfig
from wiringlab.experiment.execute import build_run_model
from wiringlab.experiment.store import RunFolder
from wiringlab.report.build import build_report

RECIPE = """
name: twins
base:
  data: {name: synthetic, options: {n_train: 128, n_test: 64, input_shape: [6], num_classes: 3}}
  model: {kind: mlp, hidden: [10, 7]}
  train: {epochs: 1, batch_size: 32, progress: false}
seeds: [0, 1, 2]
"""


def _layers(state: dict) -> list[str]:
    """The linear layers of an MLP's state in forward order (safetensors sorts its keys)."""
    names = [name[: -len(".weight")] for name in state if name.endswith(".weight")]
    return sorted(n for n in names if ".hidden." in n) + [n for n in names if ".hidden." not in n]


def _permuted(state: dict, generator: torch.Generator) -> dict:
    """`state` of a 6-10-7-3 MLP with each hidden layer's units shuffled (the same function)."""
    names, state = _layers(state), dict(state)
    for layer, following in zip(names, names[1:]):
        perm = torch.randperm(state[f"{layer}.weight"].shape[0], generator=generator)
        state[f"{layer}.weight"] = state[f"{layer}.weight"][perm]  # (out, in): units are rows
        state[f"{layer}.bias"] = state[f"{layer}.bias"][perm]
        state[f"{following}.weight"] = state[f"{following}.weight"][:, perm]  # its inputs are columns
    return state


def _cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    a, b = torch.cat([t.flatten() for t in a]).double(), torch.cat([t.flatten() for t in b]).double()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """A results folder where seed 1 is seed 0 with permuted units; seed 2 is trained."""
    _, out = run_recipe(tmp_path_factory.mktemp("twins"), RECIPE)
    runs = {RunFolder(d).read_summary()["seed"]: RunFolder(d) for d in (out / "runs").iterdir()}
    first = runs[0].read_weights()
    runs[1].write_weights(_permuted(first, torch.Generator().manual_seed(5)))
    build_report(out)
    with open(out / "similarity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return first, runs, rows


def _row(rows, seeds, layer):
    (row,) = [r for r in rows if {int(r["seed_a"]), int(r["seed_b"])} == seeds and r["layer"] == layer]
    return row


@pytest.mark.parametrize("layer, index", [("linear0", 0), ("linear1", 1), ("linear2", 2), ("all", None)])
def test_a_permuted_copy_is_the_same_network_once_aligned(twins, layer, index):
    first, runs, rows = twins
    weights = [first[f"{n}.weight"] for n in _layers(first)]
    permuted = [runs[1].read_weights()[f"{n}.weight"] for n in _layers(first)]
    pick = slice(None) if index is None else slice(index, index + 1)
    row = _row(rows, {0, 1}, layer)
    assert float(row["aligned_cos"]) == pytest.approx(1.0, abs=1e-6)
    assert float(row["raw_cos"]) == pytest.approx(_cosine(weights[pick], permuted[pick]), abs=1e-6)
    if layer in ("linear0", "linear1"):  # units were shuffled: the raw cosine sees it
        assert float(row["raw_cos"]) < 0.9
        assert float(row["cka"]) == pytest.approx(1.0, abs=1e-5)
    if layer == "linear2":  # the classifier's rows are not permuted; its columns follow linear1
        assert float(row["raw_cos"]) < 0.99


def test_a_differently_trained_seed_is_not_the_same_network(twins):
    _, _, rows = twins
    row = _row(rows, {0, 2}, "linear1")
    assert float(row["aligned_cos"]) < 0.99 and float(row["cka"]) < 0.999
    assert float(row["aligned_cos"]) >= float(row["raw_cos"])  # alignment maximises the match


def test_the_table_says_which_module_each_layer_is(twins):
    first, runs, _ = twins
    table = (runs[0].path.parent.parent / "table.md").read_text()
    names = ", ".join(f"linear{i} = `{n}`" for i, n in enumerate(_layers(first)))
    assert f"Layers: the model's weight layers in forward order ({names})" in table
    assert "convolution" not in table


def test_every_pair_and_layer_has_one_row(twins):
    _, _, rows = twins
    pairs = {frozenset((r["seed_a"], r["seed_b"])) for r in rows}
    assert len(pairs) == 3 and len(rows) == 3 * 4  # 3 pairs x (3 layers + all)


def _init_chain(run: RunFolder):
    """The run's network as its config and seed build it, untrained (what the report's at-init columns read)."""
    config = RunConfig.model_validate(run.read_config())
    model = build_run_model(config, (6,), 3, torch.device("cpu"), dense=True)
    return chain_weights(model), chain_unit_extras(model)


@pytest.mark.parametrize("layer, index", [("linear0", 0), ("linear1", 1), ("all", None)])
def test_the_at_init_columns_compare_the_two_seeds_untrained_networks(twins, layer, index):
    _, runs, rows = twins
    (w0, e0), (w2, e2) = _init_chain(runs[0]), _init_chain(runs[2])
    expected = weight_similarity(w0, w2, e0, e2)
    row = _row(rows, {0, 2}, layer)
    aligned = expected.aligned_all if index is None else expected.aligned[index]
    raw = expected.raw_all if index is None else expected.raw[index]
    assert float(row["aligned_cos_init"]) == pytest.approx(aligned, abs=1e-6)
    assert float(row["raw_cos_init"]) == pytest.approx(raw, abs=1e-6)
    assert float(row["aligned_cos_init"]) != pytest.approx(float(row["aligned_cos"]), abs=1e-3)  # training moved it
    if index is not None:
        assert 0.0 < float(row["cka_init"]) < 1.0


def test_a_permuted_copy_is_one_once_aligned_but_its_init_is_its_own_seeds(twins):
    _, _, rows = twins
    row = _row(rows, {0, 1}, "linear0")
    assert float(row["aligned_cos"]) == pytest.approx(1.0, abs=1e-6)
    assert float(row["aligned_cos_init"]) < 0.9 and float(row["cka_init"]) < 0.999


def test_the_table_has_the_chance_level_columns(twins):
    _, runs, _ = twins
    table = (runs[0].path.parent.parent / "table.md").read_text()
    assert "| raw cosine | aligned cosine | linear CKA | aligned at init | CKA at init |" in table


MIXED = """
name: mixed
base:
  data: {name: synthetic, options: {n_train: 96, n_test: 48, input_shape: [1, 12, 12], num_classes: 3}}
  train: {epochs: 1, batch_size: 32, progress: false}
grid:
  model: [{kind: mlp, hidden: [8]}, {kind: lenet, hidden: [8], channels: [2, 3]}]
seeds: [0, 1]
analysis: {similarity: {across_configs: true}}
"""


def test_across_configs_a_lenet_and_an_mlp_are_compared_layer_by_name(tmp_path):
    _, out = run_recipe(tmp_path, MIXED)
    with open(out / "similarity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    across = [r for r in rows if " vs " in r["group"]]
    assert len(across) == 4 * 3  # 4 pairs x (linear0, linear1, all): the MLP has no conv0
    assert {r["layer"] for r in across} == {"linear0", "linear1", "all"}
    for row in across:
        assert row["raw_cos"] == "" or row["raw_cos"] == "nan"  # the chains differ in shape: no alignment
        if row["layer"] == "linear0":  # both hidden layers read: CKA of 8 units against 8 units
            assert 0.0 <= float(row["cka"]) <= 1.0
    lenet = [r for r in rows if r["group"].startswith("model={") and " vs " not in r["group"] and "lenet" in r["group"]]
    assert {r["layer"] for r in lenet} == {"conv0", "conv1", "linear0", "linear1", "all"}


def test_runs_trained_on_a_gpu_are_said_to_be_rebuilt_as_another_draw(twins, tmp_path, monkeypatch):
    import json
    import shutil

    _, runs, _ = twins
    out = tmp_path / "copy"
    shutil.copytree(runs[0].path.parent.parent, out)
    summary_path = next((out / "runs").glob("*s2-*")) / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["provenance"]["device"] = "cuda:0"
    summary_path.write_text(json.dumps(summary))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    build_report(out)
    assert "1 run(s) trained on a GPU were rebuilt untrained on the CPU" in (out / "table.md").read_text()
    assert "trained on a GPU" not in (runs[0].path.parent.parent / "table.md").read_text()


def test_an_mlps_sensitivity_shuffles_are_the_streams_they_always_were(twins):
    """linearN's shuffle is drawn from `permutation-sensitivity/N`, as before convolutions
    joined the chain (they draw from `.../convN`): reports of older MLP folders reproduce."""
    from wiringlab.analysis.permutation import permutation_sensitivity
    from wiringlab.data import load_dataset
    from wiringlab.engine import to_device_data
    from wiringlab.seeding import make_generator

    _, runs, _ = twins
    with open(runs[0].path.parent.parent / "permutation_sensitivity.csv", newline="") as f:
        reported = {(int(r["seed"]), r["layer"]): float(r["acc_shuffled"]) for r in csv.DictReader(f)}

    def shuffled(seed: int, layer: int, stream: str) -> float:
        config = RunConfig.model_validate(runs[seed].read_config())
        data = to_device_data(load_dataset("synthetic", **config.data.options), config.data, torch.device("cpu"))
        model = build_run_model(config, (6,), 3, torch.device("cpu"), dense=True).eval()
        model.load_state_dict(runs[seed].read_weights())
        perm = torch.randperm((10, 7)[layer], generator=make_generator(seed, stream))
        return permutation_sensitivity(model, data.x_test, data.y_test, layer, perm).shuffled

    cases = [(seed, layer) for seed in (0, 2) for layer in (0, 1)]
    for seed, layer in cases:
        expected = shuffled(seed, layer, f"permutation-sensitivity/{layer}")
        assert reported[seed, f"linear{layer}"] == pytest.approx(expected)
    other = [shuffled(seed, layer, f"permutation-sensitivity/linear{layer}") for seed, layer in cases]
    assert other != [reported[seed, f"linear{layer}"] for seed, layer in cases]  # the stream shows in the numbers


ACROSS = """
name: across
base:
  data: {name: synthetic, options: {n_train: 96, n_test: 48, input_shape: [6], num_classes: 3}}
  model: {kind: mlp, hidden: [8]}
  train: {epochs: 1, batch_size: 32, progress: false}
grid:
  data.options.seed: [0, 1]
  data.n_train: [64, 96]
seeds: [0]
analysis: {similarity: {across_configs: true}}
"""


def test_cka_across_configs_needs_the_same_test_samples(tmp_path):
    """Two datasets' test samples: CKA of responses to different inputs would be a number
    about nothing. A grid of n_train keeps the test samples, so its pairs keep CKA."""
    _, out = run_recipe(tmp_path, ACROSS)
    with open(out / "similarity.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["layer"] == "linear0"]
    by_group = {r["group"]: r for r in rows}
    differ = [g for g in by_group if "seed=0" in g and "seed=1" in g]  # two datasets' test samples
    same = [g for g in by_group if " vs " in g and g not in differ]
    assert differ and same
    assert all(by_group[g]["cka"] in ("", "nan") and by_group[g]["cka_init"] in ("", "nan") for g in differ)
    assert all(0 < float(by_group[g]["cka"]) <= 1 for g in same)
    assert "CKA is – for pairs whose configs test on different samples" in (out / "table.md").read_text()


def _trained_chain(run: RunFolder):
    config = RunConfig.model_validate(run.read_config())
    model = build_run_model(config, (6,), 3, torch.device("cpu"), dense=True)
    model.load_state_dict(run.read_weights())
    return chain_weights(model), chain_unit_extras(model)


def test_full_matching_is_what_the_recipe_asks_for(twins, tmp_path):
    import json
    import shutil

    from wiringlab.analysis.weight_matching import rebasin_weights

    _, runs, forward_rows = twins
    out = tmp_path / "full"
    shutil.copytree(runs[0].path.parent.parent, out)
    recipe = json.loads((out / "recipe.json").read_text())
    (out / "recipe.json").write_text(json.dumps({**recipe, "analysis": {"similarity": {"matching": "full"}}}))
    build_report(out)
    with open(out / "similarity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    (w0, e0), (w2, e2) = _trained_chain(runs[0]), _trained_chain(runs[2])
    expected = weight_similarity(w0, w2, e0, e2, match=rebasin_weights)
    assert float(_row(rows, {0, 2}, "all")["aligned_cos"]) == pytest.approx(expected.aligned_all, abs=1e-6)
    full, forward = (float(_row(r, {0, 2}, "all")["aligned_cos"]) for r in (rows, forward_rows))
    assert full > forward + 1e-3  # it re-matched units the forward pass had not (known for these seeds; not
    # guaranteed with biases: J counts them too, and a step may gain on biases and lose on weights)
    assert float(_row(rows, {0, 1}, "all")["aligned_cos"]) == pytest.approx(1.0, abs=1e-6)  # the copy still aligns
    assert "`analysis.similarity.matching: full`" in (out / "table.md").read_text()
    assert "`analysis.similarity.matching: forward`" in (runs[0].path.parent.parent / "table.md").read_text()


def test_runs_without_weights_are_named_and_a_missing_config_is_said_not_raised(twins, tmp_path):
    import shutil

    _, runs, _ = twins
    out = tmp_path / "damaged"
    shutil.copytree(runs[0].path.parent.parent, out)
    (next((out / "runs").glob("*s2-*")) / "weights.safetensors").unlink()
    build_report(out)
    table = (out / "table.md").read_text()
    assert "1 completed run(s) have no weights.safetensors and are left out" in table
    (next((out / "runs").glob("*s1-*")) / "config.yaml").unlink()
    build_report(out)  # raised FileNotFoundError before, leaving table.md and report.html stale
    table = (out / "table.md").read_text()
    assert "Not computed: [Errno 2] No such file or directory" in table  # similarity
    assert "Not computed: a run's file is missing" in table  # a section that reads config.yaml (locality)
    assert "Results" in (out / "report.html").read_text()
