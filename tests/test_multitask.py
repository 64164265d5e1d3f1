"""Multi-task weight sharing with per-task kernels: the layer, the network, the cycling of the
smaller dataset, gradient routing, and spatial_decay == no_spatial with uniform kernels."""

import copy
import pickle

import pytest
import torch
from torch import nn

from tests.helpers import blob_data
from wiringlab.engine.multitask import CyclingBatches, TaskData, lead_task, train_multitask
from wiringlab.experiment.config import MultitaskConfig, RunConfig, TrainConfig
from wiringlab.experiment.multitask_run import build_multitask_run_model, multitask_callbacks
from wiringlab.init import init_parameters_
from wiringlab.kernels import KernelSpec
from wiringlab.layers.task_kernel import TaskKernelLinear
from wiringlab.schedules import Anneal, Static
from wiringlab.seeding import make_generator

TASKS = ("images", "signals")


def _tasks(n_big=240, n_small=70, batch=32):
    big = blob_data(n_train=n_big, n_test=64, dim=24, classes=4, seed=1)
    small = blob_data(n_train=n_small, n_test=32, dim=10, classes=3, seed=2)
    return [TaskData("images", big, 1.0, batch), TaskData("signals", small, 0.5, batch)]


def _config(condition, kernel="exponential", schedule="anneal-out", **extra):
    tasks = {name: {"data": {"name": "synthetic"}, "kernel": {"kernel": kernel, "schedule": schedule, **extra.get(name, {})}}
             for name in TASKS}
    return RunConfig(multitask=MultitaskConfig(condition=condition, tasks=tasks, width=16, depth=2), seed=3)


def _model(condition, tasks, **kw):
    return build_multitask_run_model(_config(condition, **kw), tasks, torch.device("cpu"))


# --- the layer --------------------------------------------------------------------------------


def test_all_ones_task_kernels_equal_nn_linear_exactly():
    layer = TaskKernelLinear(12, 7, TASKS, kernels={"images": "none", "signals": torch.ones(7, 12)})
    plain = nn.Linear(12, 7)
    init_parameters_(layer, make_generator(0, "init"))
    init_parameters_(plain, make_generator(0, "init"))
    x = torch.randn(5, 12)
    for task in (*TASKS, 0, 1):
        assert torch.equal(layer(x, task), plain(x))


def test_the_tasks_kernel_is_applied():
    layer = TaskKernelLinear(16, 16, TASKS, kernels={"images": "exponential", "signals": "exponential"},
                             shifts={"signals": 0.5})
    x = torch.randn(4, 16)
    assert not torch.allclose(layer(x, "images"), layer(x, "signals"))
    for task in TASKS:  # oracle: each output is x @ (W ⊙ K_task)^T + b
        expected = x @ (layer.weight * layer.kernels[layer.task_index(task)]).T + layer.bias
        torch.testing.assert_close(layer(x, task), expected)
    assert torch.equal(layer.kernels[1], layer.kernels[0].roll(8, dims=1))  # centre moved by half the inputs


def test_shuffled_task_kernel_has_the_same_values_elsewhere():
    layer = TaskKernelLinear(10, 8, TASKS, kernels={t: "exponential" for t in TASKS},
                             shuffle_generators={"signals": make_generator(1000, "shuffle")})
    a, b = layer.kernels
    assert torch.equal(a.flatten().sort().values, b.flatten().sort().values) and not torch.equal(a, b)


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_each_task_follows_its_own_schedule(t):
    spec = KernelSpec("gaussian")
    layer = TaskKernelLinear(9, 9, TASKS, kernels={"images": Anneal(spec, KernelSpec("none")), "signals": Static(spec)})
    layer.set_progress(t)
    distance = layer.distance
    torch.testing.assert_close(layer.kernels[0], Anneal(spec, KernelSpec("none")).kernel(distance, t))
    torch.testing.assert_close(layer.kernels[1], spec.evaluate(distance))


def test_layer_contracts_state_dict_deepcopy_pickle_gradcheck():
    layer = TaskKernelLinear(6, 5, TASKS, kernels={"images": "exponential"}, dtype=torch.float64)
    other = TaskKernelLinear(6, 5, TASKS, kernels={"images": "exponential"}, dtype=torch.float64)
    other.load_state_dict(layer.state_dict())
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    for clone in (other, copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert torch.equal(clone(x, "images"), layer(x, "images"))
    torch.testing.assert_close(layer(x, "images"), nn.functional.linear(x, layer.weight * layer.kernels[0],
                                                                         layer.bias))

    def through_the_layer(inp, w):
        return torch.func.functional_call(layer, {"weight": w, "bias": layer.bias}, (inp, "images"))

    assert torch.autograd.gradcheck(through_the_layer, (x, layer.weight.detach().clone().requires_grad_()))


def test_layer_errors_name_the_fix():
    with pytest.raises(ValueError, match="unknown task 'audio'"):
        TaskKernelLinear(4, 4, TASKS, kernels={"audio": "linear"})
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        TaskKernelLinear(4, 4, TASKS, shifts={"images": 1.0})


# --- the network ------------------------------------------------------------------------------


def test_shared_trunk_gets_gradients_from_both_tasks_and_adapters_only_from_their_own():
    tasks = _tasks()
    model = _model("spatial_decay", tasks)
    for task in tasks:
        model.zero_grad(set_to_none=True)
        model(task.data.x_train[:8], task.name).sum().backward()
        for layer in model.trunk:
            assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
        for other in TASKS:
            used = other == task.name
            for module in (model.adapters[other], model.heads[other]):
                assert (module.weight.grad is not None) == used


def test_separate_networks_share_nothing():
    tasks = _tasks()
    model = _model("separate", tasks)
    model.zero_grad(set_to_none=True)
    model(tasks[0].data.x_train[:8], "images").sum().backward()
    assert all(p.grad is not None for p in model.trunk["images"].parameters())
    assert all(p.grad is None for p in model.trunk["signals"].parameters())


def test_outputs_differ_by_task_for_the_same_trunk_input():
    tasks = _tasks()
    model = _model("spatial_decay", tasks, signals={"shuffle_seed": 1000})
    h = torch.randn(5, 16)
    layer = model.trunk[0]
    assert not torch.allclose(layer(h, "images"), layer(h, "signals"))
    uniform = _model("spatial_decay", tasks, kernel="none")
    assert torch.equal(uniform.trunk[0](h, "images"), uniform.trunk[0](h, "signals"))


# --- data: cycling ----------------------------------------------------------------------------


@pytest.mark.parametrize("n,batch", [(10, 4), (7, 7), (3, 8), (25, 6)])
def test_cycling_stream_is_concatenated_permutations(n, batch):
    stream = CyclingBatches(n, batch, torch.Generator().manual_seed(0), torch.device("cpu"))
    steps = 13
    drawn = torch.cat([next(stream) for _ in range(steps)])
    assert len(drawn) == steps * batch
    full_passes = len(drawn) // n
    for p in range(full_passes):  # every pass is a permutation of range(n)
        assert torch.equal(drawn[p * n : (p + 1) * n].sort().values, torch.arange(n))
    counts = torch.bincount(drawn, minlength=n)
    assert counts.min() >= full_passes and counts.max() <= full_passes + 1
    assert stream.passes == -(-len(drawn) // n)


def test_training_draws_the_small_task_as_one_stream_across_epochs():
    tasks = _tasks(n_big=100, n_small=30, batch=16)  # lead: 7 steps/epoch; small: 16 per step
    assert lead_task(tasks).name == "images"
    seen = []

    class Recorder(nn.Module):  # a "model" that records which signals samples it was fed
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x, task):
            if task == "signals" and self.training:  # not the evaluation passes
                seen.append(x.clone())
            return torch.zeros(len(x), 4 if task == "images" else 3) + self.w

        def task_view(self, task):
            return _View(self, task)

    cfg = TrainConfig(epochs=2, batch_size=16, progress=False)
    train_multitask(Recorder(), tasks, cfg, seed=0)
    x_small = tasks[1].data.x_train
    drawn = torch.cat(seen)  # (2 epochs * 7 steps * 16, dim)
    assert len(drawn) == 2 * 7 * 16
    matches = (drawn[:, None, :] == x_small[None]).all(-1)  # (draws, samples)
    assert matches.sum(1).eq(1).all()  # every draw is exactly one training sample
    index = matches.float().argmax(1)  # sample ids
    expected = CyclingBatches(30, 16, make_generator(0, "data/signals"), torch.device("cpu"))
    assert torch.equal(index, torch.cat([next(expected) for _ in range(14)]))


class _View(nn.Module):
    def __init__(self, net, task):
        super().__init__()
        self.net, self.task = net, task

    def forward(self, x):
        return self.net(x, self.task)


# --- training ---------------------------------------------------------------------------------


def _train(condition, tasks, epochs=2, **kw):
    config = _config(condition, **kw)
    model = build_multitask_run_model(config, tasks, torch.device("cpu"))
    cfg = TrainConfig(epochs=epochs, batch_size=32, optimizer={"name": "adam", "lr": 0.01}, progress=False)
    return model, train_multitask(model, tasks, cfg, seed=0, callbacks=multitask_callbacks(config, model))


def test_spatial_decay_with_uniform_kernels_equals_no_spatial_exactly():
    tasks = _tasks()  # uniform kernels decaying to uniform: every step multiplies W by exactly 1
    spatial, spatial_result = _train("spatial_decay", tasks, kernel="none")
    plain, plain_result = _train("no_spatial", tasks)
    assert len(spatial_result.history) == len(plain_result.history) == 2
    for a, b in zip(spatial_result.history, plain_result.history, strict=True):
        assert {k: v for k, v in a.items() if "kernel" not in k and k != "time_s"} == \
               {k: v for k, v in b.items() if k != "time_s"}
    for (name, p), (name_b, q) in zip(spatial.named_parameters(), plain.named_parameters(), strict=True):
        assert name == name_b and torch.equal(p, q)


def test_multitask_training_learns_both_tasks_and_decays_kernels():
    tasks = _tasks()
    model, result = _train("spatial_decay", tasks, epochs=4)
    final = result.final
    assert result.status == "completed"
    assert final["test_acc/images"] > 0.8 and final["test_acc/signals"] > 0.8  # chance: 0.25 and 0.33
    assert final["test_acc"] == pytest.approx((final["test_acc/images"] + final["test_acc/signals"]) / 2)
    assert final["kernel_mean/images"] == pytest.approx(1.0) and final["kernel_sparsity/signals"] == 0.0
    assert result.history[0]["kernel_mean/images"] < 1.0
    assert torch.equal(model.trunk[0].kernels, torch.ones_like(model.trunk[0].kernels))


def test_config_rejects_top_level_data_with_the_fix():
    with pytest.raises(ValueError, match=r"multitask.tasks.<name>.data"):
        RunConfig(data={"name": "synthetic"}, multitask=_config("no_spatial").multitask)
    with pytest.raises(ValueError, match="task name"):
        MultitaskConfig(tasks={"train": {"data": {}}})


def test_config_round_trips_through_json_as_sweep_workers_do():
    config = _config("spatial_decay", signals={"shuffle_seed": 7, "shift": 0.25})
    again = RunConfig.model_validate(config.model_dump(mode="json"))
    assert again == config and list(again.multitask.tasks) == list(TASKS)
    assert [d.name for d in again.data_configs()] == ["synthetic", "synthetic"]


def test_separate_shares_are_ratios_of_mean_accuracies():
    from wiringlab.report.multitask import separate_references, separate_shares

    def run(condition, a, b, width=64):
        return {"multitask": {"condition": condition, "tasks": list(TASKS)},
                "axes": {"multitask.condition": condition, "multitask.width": width},
                "final": {"test_acc/images": a, "test_acc/signals": b}}

    groups = {"sep": [run("separate", 0.5, 0.8), run("separate", 0.7, 0.8)],
              "shared": [run("no_spatial", 0.6, 0.4), run("no_spatial", 0.6, 0.4)]}
    shares = separate_shares(groups, list(TASKS), separate_references(groups))
    assert shares["sep"] == {"images": 1.0, "signals": 1.0, "mean": 1.0}
    assert shares["shared"]["images"] == pytest.approx(1.0) and shares["shared"]["signals"] == pytest.approx(0.5)
    assert shares["shared"]["mean"] == pytest.approx(0.75)


def test_each_config_is_a_share_of_the_separate_config_with_its_other_settings():
    """A grid over width: the wide shared net is compared with the wide separate nets, not
    with whichever separate config came first (that gave 176% of "separate")."""
    from wiringlab.report.multitask import separate_references, separate_shares

    def run(condition, acc, width):
        return {"multitask": {"condition": condition, "tasks": list(TASKS)},
                "axes": {"multitask.condition": condition, "multitask.width": width},
                "final": {"test_acc/images": acc, "test_acc/signals": acc}}

    groups = {"sep-32": [run("separate", 0.5, 32)], "sep-512": [run("separate", 0.9, 512)],
              "shared-512": [run("no_spatial", 0.88, 512)], "shared-8": [run("no_spatial", 0.3, 8)]}
    references = separate_references(groups)
    assert references == {"sep-32": "sep-32", "sep-512": "sep-512", "shared-512": "sep-512"}
    shares = separate_shares(groups, list(TASKS), references)
    assert shares["shared-512"]["mean"] == pytest.approx(0.88 / 0.9) and shares["sep-512"]["mean"] == 1.0
    assert "shared-8" not in shares


def test_a_task_kernel_layer_on_the_meta_device_is_refused_not_left_uninitialised():
    from wiringlab.layers.task_kernel import TaskKernelLinear

    with pytest.raises(ValueError, match="meta device"):
        TaskKernelLinear(6, 4, ["a", "b"], kernels={"a": "exponential"}, device="meta")
    with torch.device("meta"), pytest.raises(ValueError, match="meta device"):
        TaskKernelLinear(6, 4, ["a", "b"], kernels={"a": "exponential"})
