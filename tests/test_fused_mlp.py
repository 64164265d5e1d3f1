"""The fused MLP step (engine/fused_mlp.py) against autograd: same numbers, same optimizer
state, the same gradients where a callback reads them; and what it refuses to train."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from helpers import blob_data
from wiringlab.engine import Callback, CallbackList, DeviceData, train
from wiringlab.engine.fused_mlp import fused_mlp_layers
from wiringlab.experiment import expand, load_recipe, run_sweep
from wiringlab.experiment.config import LeNetConfig, MLPConfig, TrainConfig
from wiringlab.init import init_parameters_
from wiringlab.models import build_model
from wiringlab.seeding import make_generator

FOLDED, ON_GRAD = "fused-mlp, momentum in the GEMM", "fused-mlp, optimizer on .grad"


def _data64(n_train=300) -> DeviceData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + 60, 1, 4, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (n_train + 60,), generator=g)
    return DeviceData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], (1, 4, 5), 4)


def _model64(hidden=(24, 16), classifier_bias=True, **kw):
    model = build_model(MLPConfig(hidden=list(hidden), **kw), (1, 4, 5), 4, dtype=torch.float64)
    if not classifier_bias:
        model.stack.classifier = nn.Linear(hidden[-1], 4, bias=False, dtype=torch.float64)
    return init_parameters_(model, make_generator(0, "init"))


def _cfg(step, optimizer, **kw):
    base = dict(epochs=3, batch_size=64, progress=False, step=step, optimizer=optimizer,
                lr_schedule={"name": "cosine"})
    return TrainConfig(**(base | kw))


def _metrics(result):
    return [[r[k] for k in ("lr", "train_loss", "train_acc", "test_loss", "test_acc")] for r in result.history]


OPTIMIZERS = [
    ({"name": "sgd", "lr": 0.1, "momentum": 0.9}, FOLDED),
    ({"name": "sgd", "lr": 0.1, "momentum": 0.8, "weight_decay": 0.01}, FOLDED),
    ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, ON_GRAD),
    ({"name": "sgd", "lr": 0.2, "momentum": 0.0, "weight_decay": 0.01}, ON_GRAD),
    ({"name": "adam", "lr": 0.01, "weight_decay": 0.01}, ON_GRAD),
    ({"name": "adamw", "lr": 0.01, "weight_decay": 0.1}, ON_GRAD),
    ({"name": "rmsprop", "lr": 0.003, "momentum": 0.5}, ON_GRAD),
]


@pytest.mark.parametrize("optimizer,mode", OPTIMIZERS, ids=["sgd-momentum", "sgd-momentum-wd", "sgd-nesterov-wd",
                                                            "sgd-wd", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("classifier_bias", [True, False])
def test_fused_step_equals_autograd_in_float64(optimizer, mode, classifier_bias):
    """Oracle: every parameter and every epoch metric equal autograd's to 1e-10 after
    3 epochs of 5 steps (the last batch partial: 300 = 4 × 64 + 44), with a cosine lr."""
    fused, plain = _model64(classifier_bias=classifier_bias), _model64(classifier_bias=classifier_bias)
    a = train(fused, _data64(), _cfg("auto", optimizer), seed=3)
    b = train(plain, _data64(), _cfg("autograd", optimizer), seed=3)
    assert (a.train_step, b.train_step) == (mode, "autograd")
    torch.testing.assert_close(_metrics(a), _metrics(b), rtol=0, atol=1e-10)
    for (name, p), q in zip(fused.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-10, msg=name)
    assert not torch.equal(fused.stack.hidden[0][0].weight, _model64().stack.hidden[0][0].weight)  # it trained


def test_folded_momentum_keeps_the_optimizers_state_true():
    """The buffers the fused step updates are the optimizer's own: equal to autograd's."""
    states = {}
    for step in ("auto", "autograd"):
        captured = _Capture(lambda state: [state.optimizer.state[p]["momentum_buffer"].clone()
                                           for p in state.model.parameters()])
        train(_model64(), _data64(), _cfg(step, {"name": "sgd", "lr": 0.1, "momentum": 0.9}), seed=0,
              callbacks=[captured])
        states[step] = captured.values
    torch.testing.assert_close(states["auto"], states["autograd"], rtol=0, atol=1e-10)


class _Capture(Callback):
    def __init__(self, read, reads_gradients=False):
        self.read, self.values, self.reads_gradients = read, [], reads_gradients

    def on_step_end(self, state):
        self.values.append(self.read(state))


@pytest.mark.parametrize("nested", [False, True])
def test_a_callback_that_reads_gradients_gets_autograds_gradients(nested):
    grads, kinds = {}, {}
    for step in ("auto", "autograd"):
        captured = _Capture(lambda state: [p.grad.clone() for p in state.model.parameters()], reads_gradients=True)
        result = train(_model64(), _data64(), _cfg(step, {"name": "sgd", "lr": 0.1, "momentum": 0.9}), seed=0,
                       callbacks=[CallbackList([captured])] if nested else [captured])
        grads[step], kinds[step] = captured.values, result.train_step
    assert kinds == {"auto": ON_GRAD, "autograd": "autograd"} and len(grads["auto"]) == 15
    torch.testing.assert_close(grads["auto"], grads["autograd"], rtol=0, atol=1e-10)


def test_a_param_group_changed_mid_run_is_followed():
    """A callback that turns Nesterov on after two steps: the fused step switches from
    folding the momentum to the optimizer's own step, as autograd's run does."""
    class NesterovLater(Callback):
        def on_step_end(self, state):
            if state.step == 2:
                state.optimizer.param_groups[0]["nesterov"] = True

    models = {}
    for step in ("auto", "autograd"):
        models[step] = _model64()
        result = train(models[step], _data64(), _cfg(step, {"name": "sgd", "lr": 0.1, "momentum": 0.9}), seed=0,
                       callbacks=[NesterovLater()])
        if step == "auto":
            assert result.train_step == f"{FOLDED} / {ON_GRAD}"
    for p, q in zip(models["auto"].parameters(), models["autograd"].parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-10)


def test_a_last_batch_of_one_and_the_step_schedule_match_autograd():
    runs = {}
    for step in ("auto", "autograd"):
        model = _model64(hidden=(8,))
        cfg = _cfg(step, {"name": "sgd", "lr": 0.1, "momentum": 0.9}, batch_size=23,
                   lr_schedule={"name": "step", "step_size": 1, "gamma": 0.5})
        runs[step] = train(model, _data64(n_train=70), cfg, seed=0), model  # 70 = 3 × 23 + 1
    (a, ma), (b, mb) = runs["auto"], runs["autograd"]
    assert [r["lr"] for r in a.history] == [0.1, 0.05, 0.025] and a.train_step == FOLDED
    torch.testing.assert_close(_metrics(a), _metrics(b), rtol=0, atol=1e-10)
    for p, q in zip(ma.parameters(), mb.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-10)


def test_the_fused_step_is_deterministic_in_float32():
    def run():
        model = init_parameters_(build_model(MLPConfig(hidden=[32]), (20,), 4), make_generator(0, "init"))
        result = train(model, blob_data(), _cfg("auto", {"name": "sgd", "lr": 0.1, "momentum": 0.9}), seed=1)
        return result, model

    (a, ma), (b, mb) = run(), run()
    assert a.train_step == FOLDED and _metrics(a) == _metrics(b) and a.final["test_acc"] > 0.85
    assert all(torch.equal(p, q) for p, q in zip(ma.parameters(), mb.parameters()))


UNFUSABLE = {
    "batchnorm": (dict(batchnorm=True), "not Linear → ReLU"),
    "dropout": (dict(dropout=0.2), "not Linear → ReLU"),
    "tanh": (dict(activation="tanh"), "not Linear → ReLU"),
    "spatial layer": (dict(layer={"type": "spatial", "kernel": "exponential"}), "not Linear → ReLU"),
    "sparse classifier": (dict(output_layer={"type": "sparse", "density": 0.5}), "not an nn.Linear"),
    "prior block": (dict(prior_block={"width": 16}), "prior block"),
}


@pytest.mark.parametrize("name", UNFUSABLE)
def test_models_the_fused_step_cannot_train_take_autograd(name):
    options, reason = UNFUSABLE[name]
    model = init_parameters_(build_model(MLPConfig(hidden=[24], **options), (20,), 4), make_generator(0, "init"))
    assert reason in fused_mlp_layers(model)
    result = train(model, blob_data(n_train=128), _cfg("auto", {"name": "sgd", "lr": 0.05}, epochs=1), seed=0)
    assert result.train_step == "autograd" and result.status == "completed"


@pytest.mark.parametrize("setting", [dict(l1=1e-4), dict(step="autograd"), dict(precision="bf16")])
def test_settings_the_fused_step_does_not_cover_take_autograd(setting):
    model = init_parameters_(build_model(MLPConfig(hidden=[24]), (20,), 4), make_generator(0, "init"))
    setting = dict(setting)
    cfg = _cfg(setting.pop("step", "auto"), {"name": "sgd", "lr": 0.05}, epochs=1, **setting)
    assert train(model, blob_data(n_train=128), cfg, seed=0).train_step == "autograd"


def test_tied_weights_and_half_precision_make_the_model_unfusable():
    tied = build_model(MLPConfig(hidden=[6, 6, 6]), (6,), 4)
    tied.stack.hidden[2][0].weight = tied.stack.hidden[1][0].weight
    assert "share parameters" in fused_mlp_layers(tied)
    half = build_model(MLPConfig(hidden=[6]), (6,), 4, dtype=torch.bfloat16)
    assert "not float32 or float64" in fused_mlp_layers(half)
    extra = build_model(MLPConfig(hidden=[6]), (6,), 4)
    extra.temperature = nn.Parameter(torch.ones(()))
    assert "share parameters" in fused_mlp_layers(extra)


def test_hooks_and_frozen_parameters_make_the_model_unfusable():
    model = _model64()
    assert isinstance(fused_mlp_layers(model), list)
    handle = model.stack.hidden[0][0].register_forward_hook(lambda *args: None)
    assert "hooks" in fused_mlp_layers(model)
    handle.remove()
    handle = nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        assert "hooks" in fused_mlp_layers(model)
    finally:
        handle.remove()
    assert isinstance(fused_mlp_layers(model), list)
    model.stack.classifier.bias.requires_grad_(False)
    assert "do not require gradients" in fused_mlp_layers(model)
    lenet = build_model(LeNetConfig(channels=[2, 4], hidden=[8]), (1, 12, 12), 4)
    assert "not a plain MLP" in fused_mlp_layers(lenet)


def test_a_cpu_sweep_trains_few_plain_mlps_one_at_a_time_with_the_fused_step(tmp_path):
    """On a CPU the runner does not stack fewer than 8 runs the fused step can train (they
    are faster alone; grouping._fused_alone_is_faster); their summaries say which step ran."""
    recipe = tmp_path / "plain.yaml"
    recipe.write_text("""
name: plain
base:
  data: {name: synthetic, options: {n_train: 256, n_test: 64, input_shape: [12], num_classes: 3}}
  model: {kind: mlp, hidden: [16]}
  train: {epochs: 1, batch_size: 64, progress: false, device: cpu}
grid:
  model.activation: [relu, tanh]
seeds: [0, 1]
""")
    loaded = load_recipe(recipe)
    result = run_sweep(loaded, expand(loaded), tmp_path / "out")
    steps = {(s["axes"]["model.activation"], s["provenance"]["stack_size"], s["provenance"]["train_step"])
             for s in result.summaries}
    assert steps == {("relu", 1, FOLDED), ("tanh", 2, "stacked")}


def test_eight_plain_mlps_still_stack_on_a_cpu():
    from wiringlab.experiment.grouping import FUSED_STACK_MIN_MEMBERS, _fused_alone_is_faster

    models = [build_model(MLPConfig(hidden=[6]), (6,), 3) for _ in range(FUSED_STACK_MIN_MEMBERS)]
    specs = [SimpleNamespace(config=SimpleNamespace(train=TrainConfig(), evolution=None)) for _ in models]
    cpu = torch.device("cpu")
    assert _fused_alone_is_faster(models[:-1], specs[:-1], cpu)
    assert not _fused_alone_is_faster(models, specs, cpu)
    assert not _fused_alone_is_faster(models[:2], specs[:2], torch.device("meta"))


@pytest.mark.parametrize("kw, folds", [({}, True), ({"dampening": 0.5}, False), ({"nesterov": True}, False),
                                       ({"maximize": True}, False)])
def test_only_plain_momentum_is_folded_and_every_variant_matches_autograd(kw, folds):
    """The GEMM fold computes buf = m·buf + g; an SGD with dampening (buf = m·buf + (1-d)·g),
    Nesterov or maximize must step on .grad instead, and give autograd's numbers either way."""
    from wiringlab.engine.fused_mlp import FusedMLPStep

    data = _data64(128)
    fused_model, reference = _model64(), _model64()
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, **kw) for m in (fused_model, reference)]
    step = FusedMLPStep(fused_mlp_layers(fused_model), optimizers[0], CallbackList([]))
    for batch in range(2):
        x, y = data.x_train[batch * 64:(batch + 1) * 64], data.y_train[batch * 64:(batch + 1) * 64]
        step(x, y)
        optimizers[1].zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        optimizers[1].step()
    assert step.modes == {FusedMLPStep.FOLDED if folds else FusedMLPStep.ON_GRAD}
    for a, b in zip(fused_model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
