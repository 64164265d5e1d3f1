"""Opt-in bf16 autocast and torch.compile: they train, stay opt-in, and are recorded."""

import json

import pytest
import torch
from torch._dynamo.utils import counters

from helpers import blob_data, needs_numba
from wiringlab.cli import main
from wiringlab.engine import train
from wiringlab.engine.precision import autocast, compiled
from wiringlab.engine.stacked import train_stacked
from wiringlab.experiment import expand
from wiringlab.experiment.config import MLPConfig, RunConfig, TrainConfig
from wiringlab.experiment.recipe import Recipe, run_id
from wiringlab.init import init_parameters_
from wiringlab.models import build_model
from wiringlab.seeding import make_generator


def _model(seed=0, layer=None):
    config = MLPConfig(hidden=[32], **({"layer": layer} if layer else {}))
    return init_parameters_(build_model(config, (20,), 4), make_generator(seed, "init"))


def _cfg(**kw):
    return TrainConfig(**{"epochs": 3, "batch_size": 64, "progress": False, "optimizer": {"name": "adam", "lr": 3e-3},
                          **kw})


@pytest.mark.parametrize("layer", [None, {"type": "sparse", "density": 0.05}, {"type": "spatial"}])
def test_bf16_trains_every_layer_kind_and_changes_the_numbers(layer):
    data = blob_data()
    fp32 = train(_model(layer=layer), data, _cfg(), seed=0)
    bf16 = train(_model(layer=layer), data, _cfg(precision="bf16"), seed=0)
    assert bf16.status == "completed" and bf16.final["test_acc"] > 0.6  # 4 classes: chance is 0.25
    assert bf16.final["test_acc"] == pytest.approx(fp32.final["test_acc"], abs=0.08)
    assert bf16.final["train_loss"] != fp32.final["train_loss"]  # autocast did something


def test_autocast_runs_matmuls_in_bf16_and_fp32_is_untouched():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("bf16", torch.device("cpu")):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("fp32", torch.device("cpu")):
        assert (a @ b).dtype == torch.float32
    with pytest.raises(ValueError, match="allowed: fp32, bf16"):
        autocast("fp16", torch.device("cpu"))
    assert compiled(len, "off") is len
    with pytest.raises(ValueError, match="allowed: off"):
        compiled(len, "fast")


def test_stacked_bf16_members_equal_bf16_alone():
    data = blob_data(n_train=256)
    alone = [train(_model(s), data, _cfg(precision="bf16"), seed=s) for s in (0, 1)]
    stacked = train_stacked([_model(0), _model(1)], data, [_cfg(precision="bf16")] * 2, seeds=[0, 1])
    stacked_fp32 = train_stacked([_model(0), _model(1)], data, [_cfg()] * 2, seeds=[0, 1])
    for a, b, c in zip(alone, stacked, stacked_fp32, strict=True):
        assert a.final["test_loss"] == pytest.approx(b.final["test_loss"], rel=2e-3)  # measured <= 3e-4
        assert b.final["train_loss"] != c.final["train_loss"]  # the stack did run in bf16


@pytest.mark.parametrize("layer", [None, {"type": "sparse", "density": 0.05},  # CSR layout, torch's kernels
                                   pytest.param({"type": "sparse", "density": 0.05, "csr_kernel": "numba"},
                                                marks=needs_numba)])
def test_compile_equals_eager(layer):
    """inductor on a 32-unit MLP: ~5-15 s on 2 CPU cores (the first epoch compiles)."""
    data = blob_data(n_train=256, n_test=128)
    eager = train(_model(layer=layer), data, _cfg(epochs=2), seed=0)
    counters.clear()
    fast = train(_model(layer=layer), data, _cfg(epochs=2, compile="default"), seed=0)
    assert counters["stats"]["unique_graphs"] > 0  # dynamo did compile something
    assert len(fast.history) == len(eager.history) == 2
    for x, y in zip(eager.history, fast.history):
        assert x["test_loss"] == pytest.approx(y["test_loss"], rel=1e-4)


def test_defaults_keep_run_ids_and_opt_ins_are_recorded(tmp_path):
    base = RunConfig()
    assert run_id(base, "x") == run_id(RunConfig(train={"precision": "fp32", "compile": "off"}), "x")
    assert run_id(base, "x") != run_id(RunConfig(train={"precision": "bf16"}), "x")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: tiny\nseeds: [0]\nbase:\n  data: {name: synthetic, options: {n_train: 128, n_test: 64, "
                      "input_shape: [20]}}\n  model: {hidden: [16]}\n  train: {epochs: 1, batch_size: 64}\n")
    assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "--precision", "bf16"]) == 0
    (summary_path,) = (tmp_path / "out" / "runs").glob("*/summary.json")
    provenance = json.loads(summary_path.read_text())["provenance"]
    assert provenance["precision"] == "bf16" and provenance["compile"] == "off"


def test_multitask_runs_refuse_opt_ins():
    from wiringlab.experiment import ConfigError

    recipe = Recipe(name="m", base={"multitask": {"tasks": {"a": {"data": {"name": "synthetic"}},
                                                            "b": {"data": {"name": "synthetic"}}}},
                                    "train": {"precision": "bf16"}})
    with pytest.raises(ConfigError, match="multitask run trains in fp32"):
        expand(recipe, "m.yaml")
    for extra in ({"snapshots": {"epochs": [1]}}, {"evolution": {"zeta": 0.3}}):
        recipe = Recipe(name="m", base={"multitask": recipe.base["multitask"], **extra})
        with pytest.raises(ConfigError, match="a multitask run records neither"):
            expand(recipe, "m.yaml")


def test_compiled_stack_equals_eager_stack():
    data = blob_data(n_train=256, n_test=128)
    eager = train_stacked([_model(0), _model(1)], data, [_cfg(epochs=2)] * 2, seeds=[0, 1])
    counters.clear()
    fast = train_stacked([_model(0), _model(1)], data, [_cfg(epochs=2, compile="default")] * 2, seeds=[0, 1])
    assert counters["stats"]["unique_graphs"] > 0  # dynamo did compile something
    for a, b in zip(eager, fast, strict=True):
        assert a.final["test_loss"] == pytest.approx(b.final["test_loss"], rel=1e-4)


def _cudnn_flags():
    c = torch.backends.cudnn
    return {"conv": c.conv.fp32_precision, "rnn": c.rnn.fp32_precision, "deterministic": c.deterministic,
            "benchmark": c.benchmark}


def _train_one_loop(loop, callback):
    cfg = TrainConfig(epochs=1, batch_size=64, progress=False)
    data = blob_data(n_train=128, n_test=32)
    model = lambda s: init_parameters_(build_model(MLPConfig(hidden=[8]), (20,), 4), make_generator(s, "init"))  # noqa: E731
    if loop == "alone":
        train(model(0), data, cfg, seed=0, callbacks=[callback])
    elif loop == "stacked":
        train_stacked([model(0), model(1)], data, [cfg, cfg], seeds=[0, 1], callbacks=[[callback], []])
    else:
        from wiringlab.engine.multitask import TaskData, train_multitask
        from wiringlab.experiment.config import MultitaskConfig
        from wiringlab.experiment.multitask_run import build_multitask_run_model

        tasks = [TaskData("a", data, 1.0, 64), TaskData("b", blob_data(n_train=64, n_test=32, seed=1), 0.5, 64)]
        config = RunConfig(multitask=MultitaskConfig(condition="separate", width=8, depth=1, tasks={
            name: {"data": {"name": "synthetic"}} for name in ("a", "b")}))
        train_multitask(build_multitask_run_model(config, tasks, torch.device("cpu")), tasks, cfg, seed=0,
                        callbacks=[callback])


def _legacy_tf32_off():
    torch.backends.cudnn.allow_tf32 = False


def _newer_api_ieee():
    torch.backends.fp32_precision = "ieee"


@pytest.mark.parametrize("user_setting", [None, _legacy_tf32_off, _newer_api_ieee],
                         ids=["defaults", "legacy allow_tf32", "newer fp32_precision"])
@pytest.mark.parametrize("loop", ["alone", "stacked", "multitask"])
def test_training_runs_with_exact_cudnn_and_restores_the_flags(loop, user_setting):
    """Inside every training loop cuDNN is fp32 (no TF32) and deterministic — what a LeNet
    run on a GPU needs to be the fp32, repeatable run it records; outside, the user's
    flags are back, whichever of torch's two TF32 APIs the user set them with (mixing the
    two makes torch raise). The flags are readable on CPU; their effect needs a GPU."""
    from wiringlab.engine import Callback

    class Seen(Callback):
        def __init__(self):
            self.flags = []

        def on_step_end(self, state):
            self.flags.append(_cudnn_flags())

    c = torch.backends.cudnn
    defaults = (c.benchmark, c.allow_tf32, torch.backends.fp32_precision)
    try:
        c.benchmark = True  # as a user may have set it
        if user_setting:
            user_setting()
        before, seen = _cudnn_flags(), Seen()
        _train_one_loop(loop, seen)
        assert seen.flags and all(f["conv"] in ("ieee", "none") and f["rnn"] == f["conv"] and f["deterministic"]
                                  and not f["benchmark"] for f in seen.flags)
        assert _cudnn_flags() == before
    finally:
        torch.backends.fp32_precision = defaults[2]
        c.conv.fp32_precision = c.rnn.fp32_precision = "tf32"  # torch's defaults; readable by both APIs again
        c.benchmark, c.allow_tf32 = defaults[:2]
