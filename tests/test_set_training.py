"""SET inside training: the callback's schedule, exact density, determinism, stacking,
the topology record and the config that switches it on."""

import pytest
import torch

from helpers import blob_data
from wiringlab.engine import DeviceData, train
from wiringlab.engine.evolution import SETCallback, sparse_layers
from wiringlab.engine.topology_log import TopologyLogger
from wiringlab.experiment import ConfigError, expand
from wiringlab.experiment.config import MLPConfig, RunConfig, SETConfig, TrainConfig
from wiringlab.experiment.recipe import Recipe
from wiringlab.experiment.store import RunFolder
from wiringlab.experiment.sweep import run_sweep
from wiringlab.init import init_parameters_
from wiringlab.models import build_model
from wiringlab.seeding import make_generator


def _images(n_train=384, n_test=128):
    d = blob_data(n_train=n_train, n_test=n_test, dim=64, classes=4)
    return DeviceData(d.x_train.view(-1, 1, 8, 8), d.y_train, d.x_test.view(-1, 1, 8, 8), d.y_test, (1, 8, 8), 4)


def _train(set_config=None, seed=0, epochs=4, optimizer="sgd", density=0.2, precision="fp32"):
    model = build_model(MLPConfig(hidden=[48], layer={"type": "sparse", "density": density}), (1, 8, 8), 4)
    init_parameters_(model, make_generator(seed, "init"))
    layers = sparse_layers(model)
    logger = TopologyLogger([("linear0", layers[0])])
    callbacks = ([SETCallback(layers, set_config)] if set_config else []) + [logger]
    cfg = TrainConfig(epochs=epochs, batch_size=64, progress=False, optimizer={"name": optimizer, "lr": 0.05},
                      precision=precision)
    result = train(model, _images(), cfg, seed=seed, callbacks=callbacks)
    return model, logger.history["linear0"], result


@pytest.mark.parametrize("regrow", ["random", "gradient"])
def test_set_keeps_density_learns_and_never_evolves_after_the_last_epoch(regrow):
    model, counts, result = _train(SETConfig(zeta=0.3, regrow=regrow))
    layer = sparse_layers(model)[0]
    assert [float(c.sum()) for c in counts] == [round(0.2 * 48 * 64)] * 5  # epoch 0..4, exact
    assert not torch.equal(counts[0], counts[3])  # the topology moved
    assert torch.equal(counts[3], counts[4])  # no evolution after the last epoch
    assert [r.get("set_zeta") for r in result.history] == [0.3, 0.3, 0.3, None]
    assert layer.weight[layer.mask == 0].eq(0).all()
    assert result.final["test_acc"] > 0.8  # chance is 0.25


@pytest.mark.parametrize("density", [0.2, 0.05])  # masked dense, and CSR (95% sparse)
def test_gradient_regrowth_under_bf16_autocast(density):
    """The captured dL/dW_eff = gᵀx mixes a bf16 side and an fp32 side under autocast (which
    side depends on the layout); it is computed in the weight's dtype."""
    model, counts, result = _train(SETConfig(zeta=0.3, regrow="gradient"), epochs=2, density=density,
                                   precision="bf16")
    assert result.status == "completed" and not torch.equal(counts[0], counts[1])
    assert [float(c.sum()) for c in counts] == [float(sparse_layers(model)[0].num_active)] * 3


def test_interval_and_cosine_schedule():
    _, counts, result = _train(SETConfig(zeta=0.4, interval=2, zeta_schedule="cosine"), epochs=5)
    zetas = [r.get("set_zeta") for r in result.history]
    assert zetas[0] is None and zetas[2] is None and zetas[4] is None
    assert zetas[1] == pytest.approx(0.4 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 2 / 5)).item()))
    assert zetas[3] < zetas[1]
    assert torch.equal(counts[0], counts[1]) and not torch.equal(counts[1], counts[2])


def test_fixed_sparse_training_keeps_the_initial_mask():
    model, counts, _ = _train(None)
    assert all(torch.equal(counts[0], c) for c in counts)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_set_training_is_deterministic(optimizer):
    a, counts_a, ra = _train(SETConfig(), seed=3, optimizer=optimizer)
    b, counts_b, rb = _train(SETConfig(), seed=3, optimizer=optimizer)
    c, counts_c, _ = _train(SETConfig(), seed=4, optimizer=optimizer)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert ra.final["test_loss"] == rb.final["test_loss"]
    assert not torch.equal(counts_a[-1], counts_c[-1])


def test_config_requires_sparse_layers_for_evolution():
    with pytest.raises(ValueError, match="evolution needs sparse layers"):
        RunConfig(evolution={"zeta": 0.3})
    RunConfig(model={"layer": {"type": "sparse"}}, evolution={"zeta": 0.3})  # fine
    recipe = Recipe(name="x", base={"evolution": {"zeta": 0.3}, "model": {"layer": {"type": "sparse",
                                                                                       "epsilon": -1}}})
    with pytest.raises(ConfigError, match="epsilon"):
        expand(recipe, "x.yaml")


def _recipe():
    return Recipe(name="tiny-set", seeds=[0, 1], base={
        "data": {"name": "synthetic", "options": {"n_train": 192, "n_test": 64, "input_shape": [1, 8, 8]},
                 "normalize": "minmax"},
        "model": {"hidden": [32], "layer": {"type": "sparse", "density": 0.25}},
        "train": {"epochs": 3, "batch_size": 64, "progress": False},
        "evolution": {"zeta": 0.3}})


def test_stacked_members_evolve_as_they_would_alone(tmp_path):
    recipe = _recipe()
    specs = expand(recipe)
    stacked = run_sweep(recipe, specs, tmp_path / "stacked", stack=True)
    alone = run_sweep(recipe, specs, tmp_path / "alone", stack=False)
    for spec in specs:
        a = RunFolder(tmp_path / "stacked" / "runs" / spec.run_id).read_weights("topology.safetensors")
        b = RunFolder(tmp_path / "alone" / "runs" / spec.run_id).read_weights("topology.safetensors")
        assert torch.equal(a["linear0"], b["linear0"]) and a["linear0"].shape == (4, 8, 8)
    for s, t in zip(stacked.summaries, alone.summaries):
        assert s["final"]["test_loss"] == pytest.approx(t["final"]["test_loss"], rel=1e-4)


def test_captured_dense_gradient_equals_autograd_of_the_effective_weight():
    from torch import nn

    from wiringlab.engine.evolution import _DenseGradientCapture
    from wiringlab.layers import SparseLinear

    layer = SparseLinear(10, 6, density=0.3)
    dense = nn.Linear(10, 6)
    with torch.no_grad():
        dense.weight.copy_(layer.effective_weight())
        dense.bias.copy_(layer.bias)
    x, target = torch.randn(5, 10), torch.randn(5, 6)
    capture = _DenseGradientCapture([layer])
    (layer(x) - target).pow(2).mean().backward()
    capture.remove()
    (dense(x) - target).pow(2).mean().backward()
    assert torch.allclose(capture.grads[id(layer)], dense.weight.grad, atol=1e-6)
    assert capture.grads[id(layer)][layer.mask == 0].abs().sum() > 0  # dense: empty positions too


def test_distance_regrowth_from_config_grows_short_connections():
    from wiringlab.geometry import layer_distance

    config = {"zeta": 0.5, "regrow": "distance",
              "distance": {"kernel": "exponential", "k": 12.0, "floor": 1e-6, "geometry": "grid"}}
    model, counts, _ = _train(SETConfig(**config), epochs=4)
    random_model, _, _ = _train(SETConfig(zeta=0.5), epochs=4)
    layer, random_layer = sparse_layers(model)[0], sparse_layers(random_model)[0]
    distance = layer_distance(48, 64, "grid", in_shape=(1, 8, 8))
    mean_distance = lambda m: float((distance * m).sum() / m.sum())  # noqa: E731
    assert [float(c.sum()) for c in counts] == [float(counts[0].sum())] * 5
    assert mean_distance(layer.mask) < 0.8 * mean_distance(random_layer.mask)


def test_distance_regrowth_floor_must_keep_every_position_reachable():
    # at floor 0 the farthest positions have probability 0, and a layer whose empty
    # positions are all far ran out of positions to regrow in the middle of training
    with pytest.raises(ValueError, match="floor"):
        SETConfig(regrow="distance", distance={"kernel": "linear", "floor": 0.0})


def test_distance_probabilities_follow_the_model_to_its_device():
    """A callback built before `model.to(device)` (as a library user may) must not evolve a
    GPU layer with CPU probabilities; the "meta" device stands in for a GPU here."""
    from wiringlab.engine import TrainState

    model = build_model(MLPConfig(hidden=[48], layer={"type": "sparse", "density": 0.2}), (1, 8, 8), 4)
    callback = SETCallback(sparse_layers(model), SETConfig(regrow="distance"))
    assert callback.probabilities[0].device.type == "cpu"
    model.to("meta")
    callback.on_train_start(TrainState(model, None, 2, 3, seed=0, device=torch.device("cpu")))
    assert [p.device.type for p in callback.probabilities] == ["meta"]


def test_minmax_normalisation_keeps_blank_pixels_exactly_zero():
    from wiringlab.data import Dataset
    from wiringlab.engine import to_device_data
    from wiringlab.experiment.config import DataConfig

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 1, 4, 4), generator=g, dtype=torch.uint8)
    x[:, :, 0, :] = 0  # a blank top row
    x[0, 0, 1, 1], x[1, 0, 1, 2] = 0, 255
    y = torch.arange(6) % 2
    dataset = Dataset("t", x, y, x.clone(), y.clone(), (1, 4, 4), ("a", "b"), "", "generated")
    data = to_device_data(dataset, DataConfig(name="synthetic", normalize="minmax"), torch.device("cpu"))
    assert torch.equal(data.x_train, x.float() / 255)
    assert data.x_train[:, :, 0, :].eq(0).all()


def test_csr_runs_equal_masked_dense_runs_and_their_report_analyses_them(tmp_path):
    """Sparsity 0.94 ≥ the default csr_threshold: the same sweep in CSR and masked dense."""
    from wiringlab.report.build import build_report

    folders = {}
    for name, threshold in (("csr", 0.9), ("dense", None)):
        recipe = _recipe()
        recipe.base["model"]["layer"] = {"type": "sparse", "density": 0.06, "csr_threshold": threshold}
        folders[name] = run_sweep(recipe, expand(recipe), tmp_path / name)
    for a, b in zip(folders["csr"].summaries, folders["dense"].summaries):
        assert a["final"]["test_loss"] == pytest.approx(b["final"]["test_loss"], rel=1e-4)
        assert a["final"]["test_acc"] == pytest.approx(b["final"]["test_acc"], abs=1e-4)
    build_report(tmp_path / "csr")  # similarity and permutation analyses of the CSR runs
    rows = (tmp_path / "csr" / "similarity.csv").read_text().splitlines()
    assert len(rows) >= 2


def test_gradient_regrowth_captures_the_last_batch_of_each_evolving_epoch():
    """RigL's dense gradient comes from the epoch's last step (the weights it evolves), and only in
    epochs that evolve (interval 2 of 5 epochs: after epochs 2 and 4)."""
    from types import SimpleNamespace

    from wiringlab.layers import SparseLinear

    callback = SETCallback([SparseLinear(6, 4, density=0.5)], SETConfig(regrow="gradient", interval=2))
    captured = []
    for step in range(5 * 3):  # 5 epochs of 3 steps
        callback.on_step_start(SimpleNamespace(step=step, steps_per_epoch=3, epochs=5))
        if callback._capture is not None:
            captured.append(step)
            callback.on_step_end(None)
            callback._capture = None
    assert captured == [5, 11]  # the third step of epochs 2 and 4


@pytest.mark.parametrize(("compile_mode", "csr_threshold", "refused"), [
    ("default", None, True),  # masked dense: its gradient hooks would be skipped by the compiled model
    ("off", None, False),
    ("default", 0.5, False),  # CSR at 75% sparsity: its product runs outside the compiled graph
])
def test_gradient_regrowth_under_torch_compile_is_refused_where_it_cannot_see_the_gradient(compile_mode, csr_threshold,
                                                                                            refused):
    from wiringlab.experiment.execute import build_callbacks, build_run_model

    config = RunConfig.model_validate({
        "data": {"name": "synthetic", "options": {"input_shape": [1, 8, 8]}},
        "model": {"hidden": [32], "layer": {"type": "sparse", "density": 0.25, "csr_threshold": csr_threshold}},
        "train": {"compile": compile_mode}, "evolution": {"zeta": 0.3, "regrow": "gradient"}})
    model = build_run_model(config, (1, 8, 8), 10, torch.device("cpu"))
    if refused:
        with pytest.raises(ConfigError, match=r"regrow=gradient with train.compile=default: .*1 masked-dense sparse "
                                              r"layer\(s\).*set train.compile=off, or store those layers in CSR"):
            build_callbacks(config, model)
    else:
        assert any(isinstance(c, SETCallback) for c in build_callbacks(config, model))
