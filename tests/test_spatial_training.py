"""Spatial priors in training: config, schedule callback, metrics, decay-to-kernel, real data."""

import pytest
import torch
from pydantic import ValidationError

from conftest import needs_fashion
from helpers import blob_data
from wiringlab.analysis.sparsity import epochs_to_threshold, kernel_sparsity, relative_sparsity
from wiringlab.engine import Callback, to_device_data, train
from wiringlab.experiment.config import DataConfig, MLPConfig, RunConfig, SpatialLayerConfig, TrainConfig
from wiringlab.experiment.execute import build_callbacks, build_penalties, build_run_model
from wiringlab.layers import SpatialLinear
from wiringlab.models import linear_layers
from wiringlab.regularizers import decay_to_target


def _run_config(layer: dict, hidden=(24, 16), epochs=2, layer_at="all") -> RunConfig:
    return RunConfig.model_validate({
        "model": {"hidden": list(hidden), "layer": {"type": "spatial", **layer}, "layer_at": layer_at},
        "train": {"epochs": epochs, "batch_size": 64, "progress": False, "optimizer": {"name": "adam", "lr": 0.01}},
    })


class KernelLog(Callback):
    """Records every prior layer's mean kernel before each step."""

    def __init__(self, layers):
        self.layers, self.means = layers, []

    def on_step_start(self, state):
        self.means.append([float(layer.kernel.mean()) for layer in self.layers])


@pytest.mark.parametrize("every", ["step", "epoch"])
def test_schedule_updates_every_prior_layer(every):
    config = _run_config({"kernel": "exponential", "schedule": {"kind": "sharpen", "k_start": 1, "k_end": 20,
                                                                "every": every}})
    data = blob_data()
    model = build_run_model(config, data.input_shape, data.num_classes, torch.device("cpu"))
    priors = [m for m in linear_layers(model) if isinstance(m, SpatialLinear)]
    assert len(priors) == 2 and not isinstance(linear_layers(model)[-1], SpatialLinear)
    log = KernelLog(priors)
    result = train(model, data, config.train, seed=0, callbacks=[*build_callbacks(config, model), log])
    steps = len(log.means)  # 2 epochs x 8 steps
    for i, layer in enumerate(priors):
        means = [m[i] for m in log.means]
        assert torch.equal(layer.kernel, layer.kernel_at(1.0))  # the last update saw t = 1
        assert means[0] == pytest.approx(float(layer.kernel_at(0.0).mean()))
        changes = sum(a != b for a, b in zip(means, means[1:]))
        assert changes == (steps - 1 if every == "step" else 1)
    final = result.final
    assert final["kernel_sparsity"] == pytest.approx(
        sum(int((m.kernel < 0.1).sum()) for m in priors) / sum(m.kernel.numel() for m in priors))
    total = sum(m.kernel.numel() for m in priors)
    near_zero = sum(int((w.abs() < 0.01 * w.abs().max()).sum()) for w in (m.effective_weight() for m in priors))
    assert final["weight_sparsity"] == pytest.approx(near_zero / total)  # of W_eff, not the raw W
    assert final["kernel_mean"] == pytest.approx(sum(float(m.kernel.sum()) for m in priors) / total)  # every layer
    assert near_zero > 0 and final["kernel_mean"] < 0.5  # a sharpened kernel: W_eff ≠ W in the count above


def test_a_static_kernel_is_set_once_not_every_step():
    """Its value never changes, so the schedule callback evaluates it at the start only
    (it used to re-evaluate the whole (out, in) kernel before every step)."""
    config = _run_config({"kernel": "exponential"})
    data = blob_data()
    model = build_run_model(config, data.input_shape, data.num_classes, torch.device("cpu"))
    priors = [m for m in linear_layers(model) if isinstance(m, SpatialLinear)]
    calls = []
    for layer in priors:
        layer.set_progress = lambda t, layer=layer, original=layer.set_progress: (calls.append(t), original(t))
        with torch.no_grad():
            layer.kernel.fill_(0.5)  # whatever the buffer holds, training starts from the kernel
    train(model, data, config.train, seed=0, callbacks=build_callbacks(config, model))
    assert calls == [0.0] * len(priors)
    for layer in priors:
        assert torch.equal(layer.kernel, layer.kernel_at(0.0)) and layer.kernel.min() < 0.5


def test_layer_at_first_and_metrics_absent_without_priors():
    config = _run_config({"kernel": "linear"}, layer_at="first")
    model = build_run_model(config, (20,), 4, torch.device("cpu"))
    assert [isinstance(m, SpatialLinear) for m in linear_layers(model)] == [True, False, False]
    plain = RunConfig.model_validate({"model": {"hidden": [8]}})
    assert build_callbacks(plain, build_run_model(plain, (20,), 4, torch.device("cpu"))) == []


def test_decay_to_kernel_equals_its_formula_and_enters_the_loss():
    config = _run_config({"kernel": "gaussian", "decay": 1e-3, "decay_target": "kernel"}, layer_at=[1])
    model = build_run_model(config, (20,), 4, torch.device("cpu"))
    (penalty,) = build_penalties(config, model)
    layer = linear_layers(model)[1]
    slow = sum((layer.weight[i, j] - layer.kernel[i, j]) ** 2
               for i in range(layer.out_features) for j in range(layer.in_features))
    assert torch.allclose(penalty(), 1e-3 * slow)
    assert torch.allclose(decay_to_target(layer.weight, None, 0.5), 0.5 * layer.weight.pow(2).sum())
    zero = _run_config({"kernel": "gaussian", "decay": 1e-3, "decay_target": "zero"})
    zmodel = build_run_model(zero, (20,), 4, torch.device("cpu"))
    total = sum(p() for p in build_penalties(zero, zmodel))
    assert torch.allclose(total, 1e-3 * sum(m.weight.pow(2).sum() for m in linear_layers(zmodel)[:2]))
    penalty().backward()  # pulls W toward K: gradient 2λ(W - K)
    assert torch.allclose(layer.weight.grad, 2e-3 * (layer.weight - layer.kernel).detach())


@pytest.mark.parametrize("bad,message", [
    ({"kernel": "linear", "schedule": {"kind": "sharpen"}}, "set kernel: exponential"),
    ({"mode": "masked"}, "'multiply', 'normalized' or 'capped'"),
    ({"kernel": "cubic"}, "'none', 'linear'"),
    ({"schedule": {"kind": "anneal", "start": "kernel", "end": "flat"}}, "'kernel', 'none'"),
    ({"kernal": "linear"}, "Extra inputs"),
])
def test_config_errors_name_the_fix(bad, message):
    with pytest.raises(ValidationError, match=message):
        SpatialLayerConfig.model_validate(bad)


def test_schedule_shorthand_and_defaults():
    config = SpatialLayerConfig.model_validate({"schedule": "static"})
    assert config.schedule.kind == "static" and config.kernel == "exponential" and config.mode == "multiply"


def test_sparsity_analyses():
    assert kernel_sparsity(torch.tensor([0.05, 0.09, 0.1, 0.5])) == 0.5
    assert relative_sparsity(torch.tensor([-10.0, 0.05, 0.2, 5.0]), 0.01) == 0.25
    assert relative_sparsity(torch.zeros(3)) == 1.0
    assert epochs_to_threshold([0.5, 0.7, None, 0.9], [0.6, 0.9, 0.95]) == [2, 4, None]


@needs_fashion
@pytest.mark.realdata
def test_one_epoch_exponential_kernel_mlp_on_full_fashion_mnist():
    """The plain-MLP floor of test_fashion_mnist.py holds with an exponential kernel on the
    hidden layer (0.8506 here; 0.798 with the hidden weight frozen), and the kernel is in
    the computation (mean 0.48, effective weight = W ⊙ K)."""
    from wiringlab.data import load_dataset

    data = to_device_data(load_dataset("fashion-mnist"), DataConfig(name="fashion-mnist"), torch.device("cpu"))
    config = RunConfig(model=MLPConfig(hidden=[256], layer=SpatialLayerConfig(kernel="exponential")),
                       train=TrainConfig(epochs=1, batch_size=128, progress=False,
                                         optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9}))
    model = build_run_model(config, data.input_shape, data.num_classes, torch.device("cpu"))
    assert isinstance(linear_layers(model)[0], SpatialLinear)
    result = train(model, data, config.train, seed=0, callbacks=build_callbacks(config, model))
    assert result.final["test_acc"] >= 0.83, result.final
    layer = linear_layers(model)[0]
    assert result.final["kernel_mean"] < 0.6 and layer.kernel.min() < 0.2
    torch.testing.assert_close(layer.effective_weight(), layer.weight * layer.kernel, rtol=0, atol=0)
    x = data.x_test[:64].flatten(1)
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight * layer.kernel, layer.bias))


@pytest.mark.parametrize("layer", [
    {"kernel": "exponential", "schedule": {"kind": "sharpen", "k_start": 1, "k_end": 20}, "decay": 1e-3,
     "shuffle_seed": 1000},
    {"kernel": "linear", "mode": "normalized", "schedule": "anneal-out", "decay": 1e-3, "decay_target": "zero"},
    {"kernel": "gaussian", "mode": "capped", "geometry": "grid"},
])
def test_stacked_prior_runs_equal_runs_alone(layer):
    """Seeds of a prior config train as one stack by default (`experiment.grouping`): kernels,
    schedules, shuffles, decay terms and metrics must come out as when each seed runs alone."""
    from wiringlab.engine.stacked import train_stacked

    data = blob_data(n_train=256, n_test=128)
    configs = [_run_config(layer).model_copy(update={"seed": s}) for s in (0, 1)]

    def models():
        return [build_run_model(c, data.input_shape, data.num_classes, torch.device("cpu")) for c in configs]

    alone = models()
    results_alone = [train(m, data, c.train, seed=c.seed, callbacks=build_callbacks(c, m),
                           penalties=build_penalties(c, m)) for m, c in zip(alone, configs)]
    stacked = models()
    results_stacked = train_stacked(stacked, data, [c.train for c in configs], seeds=[c.seed for c in configs],
                                    callbacks=[build_callbacks(c, m) for c, m in zip(configs, stacked)],
                                    penalties=[build_penalties(c, m) for c, m in zip(configs, stacked)])
    for a, b, ra, rb in zip(alone, stacked, results_alone, results_stacked):
        for (name, ta), tb in zip((*a.named_parameters(), *a.named_buffers()), (*b.parameters(), *b.buffers())):
            torch.testing.assert_close(ta, tb, atol=1e-5, rtol=1e-4, msg=name)
        for key in ("test_acc", "kernel_sparsity", "weight_sparsity", "kernel_mean"):
            assert ra.final[key] == pytest.approx(rb.final[key], abs=1e-4), key


def test_configs_that_differ_in_kernel_values_and_schedules_share_one_stack(tmp_path):
    """The progressive-sharpening shape: k and schedule differ per config; one stack of
    all runs gives the numbers of the runs alone."""
    from wiringlab.experiment import expand
    from wiringlab.experiment.grouping import group_runs
    from wiringlab.experiment.recipe import Recipe
    from wiringlab.experiment.sweep import run_sweep

    recipe = Recipe(name="sharpen", seeds=[0, 1], base={
        "data": {"name": "synthetic", "options": {"n_train": 256, "n_test": 128, "input_shape": [1, 6, 6]}},
        "model": {"hidden": [24], "layer": {"type": "spatial", "kernel": "exponential"}},
        "train": {"epochs": 3, "batch_size": 64, "progress": False, "optimizer": {"name": "adam", "lr": 3e-3}}},
        zip={"model.layer.k": [3.0, 15.0, 1.0],
             "model.layer.schedule": ["static", "static", {"kind": "sharpen", "k_start": 1, "k_end": 10}]})
    specs = expand(recipe)
    assert [len(g) for g in group_runs(specs)] == [6]
    stacked = run_sweep(recipe, specs, tmp_path / "stacked", stack=True)
    alone = run_sweep(recipe, specs, tmp_path / "alone", stack=False)
    assert {s["provenance"]["stack_size"] for s in stacked.summaries} == {6}
    assert {s["provenance"]["stack_size"] for s in alone.summaries} == {1}
    for a, b in zip(stacked.summaries, alone.summaries):
        for key in ("test_acc", "test_loss", "kernel_sparsity", "kernel_mean"):
            assert a["final"][key] == pytest.approx(b["final"][key], abs=1e-4), key
    kernel_means = {round(s["final"]["kernel_mean"], 4) for s in stacked.summaries}
    assert len(kernel_means) == 3  # the members really had different kernels


def test_decay_to_kernel_follows_a_scheduled_kernel():
    """The penalty reads the layer's kernel when it is called, so under an anneal it pulls W
    toward the kernel of the moment, not the one it was built with."""
    from wiringlab.kernels import KernelSpec
    from wiringlab.regularizers import decay_penalty
    from wiringlab.schedules import Anneal

    layer = SpatialLinear(6, 5, kernel=Anneal(KernelSpec("exponential", k=5.0), KernelSpec("none")))
    penalty = decay_penalty(layer, 0.1)
    at_start = penalty().item()
    assert at_start == pytest.approx((0.1 * (layer.weight - layer.kernel).square().sum()).item())
    layer.set_progress(1.0)  # the kernel is all ones now
    assert torch.equal(layer.kernel, torch.ones(5, 6))
    assert penalty().item() == pytest.approx((0.1 * (layer.weight - 1.0).square().sum()).item())
    assert penalty().item() != pytest.approx(at_start)


def test_decay_refuses_what_it_cannot_compute():
    from torch import nn

    from wiringlab.regularizers import decay_penalty

    with pytest.raises(ValueError, match="does not match"):  # broadcasts to a larger shape: would count W twice
        decay_to_target(torch.zeros(3, 4), torch.zeros(2, 3, 4), 1.0)
    with pytest.raises(ValueError, match="needs a layer with a kernel"):  # at set-up, not at the first step
        decay_penalty(nn.Linear(3, 2), 0.1)
    with pytest.raises(ValueError, match="must be >= 0"):
        decay_to_target(torch.ones(2), None, -0.1)
    assert float(decay_to_target(torch.ones(2, 2), None, 0.0)) == 0.0
