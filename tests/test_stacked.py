"""Stacked members train exactly as the same members trained one at a time."""

import math

import pytest
import torch

from helpers import blob_data
from wiringlab.engine import train
from wiringlab.engine.stacked import train_stacked
from wiringlab.engine.stacking import StackedMembers, stackable
from wiringlab.experiment.config import MLPConfig, TrainConfig
from wiringlab.init import init_parameters_
from wiringlab.models import build_model
from wiringlab.seeding import make_generator


def _model(seed, **kw):
    return init_parameters_(build_model(MLPConfig(hidden=[24, 16], **kw), (20,), 4), make_generator(seed, "init"))


def _cfg(opt, lr, wd=0.0, l1=0.0, epochs=3):
    return TrainConfig(epochs=epochs, batch_size=32, progress=False, l1=l1, lr_schedule={"name": "cosine"},
                       optimizer={"name": opt, "lr": lr, "weight_decay": wd, "momentum": 0.9,
                                  "nesterov": opt == "sgd"})


def _strip(history):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


@pytest.mark.parametrize("opt,lrs", [("sgd", [0.05, 0.02, 0.05]), ("adam", [1e-3, 3e-3, 1e-3]),
                                     ("adamw", [1e-3, 2e-3, 1e-3]), ("rmsprop", [1e-3, 5e-4, 1e-3]),
                                     ("sgd", [0.05] * 3), ("adam", [1e-3] * 3)])  # one optimizer call for all
def test_stacked_equals_sequential(opt, lrs):
    data = blob_data(n_train=480, n_test=200)  # 15 steps/epoch x 16 epochs = 240 steps
    seeds, wds, l1s = [0, 1, 2], [0.0, 1e-3, 5e-4], [0.0, 0.0, 1e-4]
    if len(set(lrs)) == 1:  # the seeds of one config
        wds, l1s = [1e-3] * 3, [1e-4] * 3
    cfgs = [_cfg(opt, lr, wd, l1, epochs=16) for lr, wd, l1 in zip(lrs, wds, l1s)]
    alone = [_model(s) for s in seeds]
    results_alone = [train(m, data, c, seed=s) for m, c, s in zip(alone, cfgs, seeds)]
    stacked = [_model(s) for s in seeds]
    results_stacked = train_stacked(stacked, data, cfgs, seeds=seeds)
    for a, b, ra, rb in zip(alone, stacked, results_alone, results_stacked):
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4, msg=name)
        for x, y in zip(_strip(ra.history), _strip(rb.history)):
            assert x.keys() == y.keys()
            for k in x:
                assert x[k] == pytest.approx(y[k], abs=1e-4), k


def test_members_do_not_leak():
    """A member's trajectory is the same whatever the other members' hyperparameters."""
    data = blob_data(n_train=256)
    a = train_stacked([_model(0), _model(1)], data, [_cfg("adam", 1e-3), _cfg("adam", 1e-3)], seeds=[0, 1])
    b = train_stacked([_model(0), _model(1)], data, [_cfg("adam", 1e-3), _cfg("adam", 1.0, wd=0.1)], seeds=[0, 1])
    for x, y in zip(_strip(a[0].history), _strip(b[0].history)):
        assert x == pytest.approx(y, abs=1e-6)
    assert a[1].history[-1]["train_loss"] != b[1].history[-1]["train_loss"]


def test_diverged_member_is_recorded_alone():
    data = blob_data(n_train=256)
    results = train_stacked([_model(0), _model(1)], data, [_cfg("sgd", 0.05), _cfg("sgd", 1e12)], seeds=[0, 1])
    assert results[0].status == "completed" and len(results[0].history) == 3
    assert results[1].status == "diverged"
    assert results[0].final["test_acc"] > 0.8


def test_a_member_that_blows_up_in_its_last_step_is_diverged_alone():
    cfgs = [TrainConfig(epochs=1, batch_size=64, progress=False, optimizer={"name": "sgd", "lr": lr})
            for lr in (0.05, 1e37)]
    results = train_stacked([_model(0), _model(1)], blob_data(n_train=64), cfgs, seeds=[0, 1])
    assert [r.status for r in results] == ["completed", "diverged"]
    assert math.isfinite(results[0].final["test_acc"]) and math.isnan(results[1].final["test_acc"])


def test_members_alias_the_stack_and_resync_repairs_replacement():
    models = [_model(0), _model(1)]
    stack = StackedMembers(models)
    layer = models[1].stack.hidden[0][0]
    with torch.no_grad():
        layer.weight.mul_(0)  # in-place on a member reaches the stack
    assert stack.params["stack.hidden.0.0.weight"][1].abs().sum() == 0
    layer.weight.data = torch.ones_like(layer.weight)  # replaced: resync copies it back
    stack.resync()
    assert torch.equal(stack.params["stack.hidden.0.0.weight"][1], torch.ones_like(layer.weight))


@pytest.mark.parametrize("l1", [0.0, 1e-4])
def test_weight_gradients_are_taken_over_without_an_accumulation_pass(l1):
    """vmapped linear layers deliver (M, in, out) gradients viewed as (M, out, in) (with L1:
    summed with the penalty's, in another layout): the stack stores each weight in the
    layout its gradient arrives in, so no step zeroes a weight-sized buffer or copies a
    gradient into one, and members get contiguous weights back after training."""
    from torch.utils._python_dispatch import TorchDispatchMode

    models = [_model(0), _model(1)]
    sizes = {p.numel() * 2 for n, p in models[0].named_parameters() if p.dim() == 2}  # (M, out, in)

    class WeightSizedWrites(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in ("add_", "fill_", "zero_", "copy_") and args[0].numel() in sizes:
                self.calls.append(name)
            return func(*args, **(kwargs or {}))

    with WeightSizedWrites() as writes:
        train_stacked(models, blob_data(n_train=256), [_cfg("sgd", 0.05, l1=l1)] * 2, seeds=[0, 1])
    steps = 3 * 256 // 32
    assert sum(writes.calls.count(op) for op in ("fill_", "zero_", "copy_")) < steps, writes.calls
    if not l1:  # with L1, autograd itself adds the two contributions
        assert writes.calls.count("add_") < steps, writes.calls
    assert all(p.is_contiguous() for m in models for p in m.parameters())


def test_unstackable_models_say_why():
    assert "BatchNorm" in stackable(_model(0, batchnorm=True))
    assert "dropout" in stackable(_model(0, dropout=0.2))
    assert stackable(_model(0)) is None
    with pytest.raises(ValueError, match="structure"):
        StackedMembers([_model(0), init_parameters_(build_model(MLPConfig(hidden=[8]), (20,), 4),
                                                     make_generator(0, "init"))])


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_members_with_equal_hyperparameters_share_one_call_with_the_same_numbers(name):
    """Neighbouring members with equal configs and lr are stepped as one slice. Each member
    must still follow its own torch optimizer alone (the reference), including the first
    momentum step, a parameter without a gradient at first, and an lr change that splits
    a run. To float rounding, not bitwise:
    torch's fused CPU kernels round the elements past the last full vector differently,
    and where a member's elements fall relative to that boundary depends on the slice."""
    from wiringlab.engine.optim import build_optimizer
    from wiringlab.engine.stacked_optim import StackedOptimizer
    from wiringlab.experiment.config import OptimizerConfig

    same = OptimizerConfig(name=name, lr=0.01, momentum=0.9, weight_decay=1e-3)
    configs = [same, same, same, OptimizerConfig(name=name, lr=0.02, momentum=0.9), same]
    factors = [[1.0] * 5, [1.0] * 5, [0.5, 0.5, 0.25, 0.5, 0.5], [0.5, 0.5, 0.25, 0.5, 0.5]]  # step 2 splits a run
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 6, 4, generator=g), torch.randn(5, 6, generator=g)]
    grads = [[torch.randn(5, 6, 4, generator=g), torch.randn(5, 6, generator=g)] for _ in factors]
    grads[0][1] = None  # a parameter the loss reaches only from the second step: it counts its own steps

    stacked = [p.clone().requires_grad_() for p in start]
    opt = StackedOptimizer(stacked, name, configs)
    assert opt._runs == [(0, 3), (3, 4), (4, 5)]
    for grad, f in zip(grads, factors):
        opt.set_lr_factors(f)
        for p, gr in zip(stacked, grad):
            p.grad = None if gr is None else gr.clone()
        opt.step()
    assert opt._runs == [(0, 2), (2, 3), (3, 4), (4, 5)]
    for m, config in enumerate(configs):
        alone = [p[m].clone().requires_grad_() for p in start]
        reference = build_optimizer(alone, config)
        if name == "sgd":  # torch's fused SGD cannot start one buffer later than another (a TypeError)
            reference = torch.optim.SGD(alone, lr=config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay, foreach=False)
        for grad, f in zip(grads, factors):
            reference.param_groups[0]["lr"] = config.lr * f[m]
            for p, gr in zip(alone, grad):
                p.grad = None if gr is None else gr[m].clone()
            reference.step()
        for a, b in zip(stacked, alone):
            torch.testing.assert_close(a[m], b, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_float64_stack_equals_float64_runs_to_rounding(opt):
    """In float64 the loss is taken in float64 in both loops (trainer.loss_input), so a stack
    and the same members trained alone agree to float64 rounding, not float32's."""
    data = blob_data(n_train=200, n_test=60)
    data = type(data)(*(t.double() if t.is_floating_point() else t for t in (data.x_train, data.y_train,
                                                                            data.x_test, data.y_test)),
                      data.input_shape, data.num_classes)
    cfgs = [_cfg(opt, lr, epochs=4) for lr in (0.05, 0.02)] if opt == "sgd" else \
        [_cfg(opt, lr, epochs=4) for lr in (1e-3, 3e-3)]

    def models():
        return [init_parameters_(build_model(MLPConfig(hidden=[24, 16]), (20,), 4, dtype=torch.float64),
                                 make_generator(s, "init")) for s in (0, 1)]

    alone, stacked = models(), models()
    results_alone = [train(m, data, c, seed=s) for m, c, s in zip(alone, cfgs, (0, 1))]
    results_stacked = train_stacked(stacked, data, cfgs, seeds=[0, 1])
    for a, b, ra, rb in zip(alone, stacked, results_alone, results_stacked):
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(pa, pb, atol=1e-11, rtol=1e-10, msg=name)
        for x, y in zip(_strip(ra.history), _strip(rb.history)):
            assert x == pytest.approx(y, abs=1e-6)  # reported sums are float32 in both loops
