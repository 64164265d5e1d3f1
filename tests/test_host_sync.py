"""No training step reads a value back to the host (issue 8: "no host sync per step").

On a GPU every such read — `.item()`, `bool(t)`, `float(t)`, `.tolist()`, `.cpu()`, a
data-dependent shape such as `nonzero` or boolean indexing — stalls the CPU until the
stream drains. CI has no GPU, so this counts, on CPU, the aten ops that force one on any
device (under a `TorchDispatchMode`) and the Tensor methods that copy to the host (which
on a CPU never reach the dispatcher, so they are wrapped for the duration), and checks
that their number does not grow with the number of steps: per epoch (metrics, SET
evolution, divergence check, snapshots) is allowed, per step is not.

Pitfall: on CPU every tensor is a host tensor, so this also counts reads of tensors that
on a GPU run would live on the host anyway (which cost Python time, not a sync).
"""

import contextlib
from collections import Counter
from unittest import mock

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import blob_data
from wiringlab.engine import train
from wiringlab.engine.stacked import train_stacked
from wiringlab.experiment.config import RunConfig
from wiringlab.experiment.execute import build_callbacks, build_penalties, build_run_model

# Ops whose result the host must wait for: a scalar read, or an output whose size
# depends on the values.
HOST_READS = {"_local_scalar_dense", "is_nonzero", "equal", "nonzero", "masked_select", "unique_consecutive",
              "_unique2", "unique_dim", "repeat_interleave", "bincount", "histc"}
INDEXING = {"index", "index_put", "index_put_", "_index_put_impl_"}  # a host read with a boolean index
HOST_COPIES = ("tolist", "numpy", "cpu", "__array__")  # device-to-host copies


class HostReads(TorchDispatchMode):
    """Counts calls of `HOST_READS` ops, indexing with a boolean mask, and `HOST_COPIES`."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []
        self._wrapped = contextlib.ExitStack()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        boolean_index = name in INDEXING and any(
            t is not None and t.dtype == torch.bool for t in (args[1] if len(args) > 1 else []))
        if name in HOST_READS or boolean_index:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))

    def _recording(self, name: str, method):
        def record(tensor, *args, **kwargs):
            self.calls.append(name)
            return method(tensor, *args, **kwargs)
        return record

    def __enter__(self):
        for name in HOST_COPIES:
            self._wrapped.enter_context(mock.patch.object(torch.Tensor, name,
                                                          self._recording(name, getattr(torch.Tensor, name))))
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._wrapped.close()


SPARSE = {"type": "sparse", "density": 0.3}
CSR = {"type": "sparse", "density": 0.05}  # compressed at >= 90% sparsity
# name: (layer, evolution, whether the runner stacks it: CSR layers and gradient regrowth run alone)
CASES = {
    "plain": ({"type": "linear"}, None, True),
    "spatial, sharpened every step": ({"type": "spatial", "kernel": "exponential", "schedule": {
        "kind": "sharpen", "k_start": 1, "k_end": 20, "every": "step"}}, None, True),
    "SET, masked dense": (SPARSE, {"zeta": 0.3}, True),
    "SET, masked dense, gradient regrowth": (SPARSE, {"zeta": 0.3, "regrow": "gradient"}, False),
    "SET, CSR, gradient regrowth": (CSR, {"zeta": 0.3, "regrow": "gradient"}, False),
}


def _config(case: str, optimizer: str, l1: float) -> RunConfig:
    layer, evolution, _ = CASES[case]
    train_cfg = {"epochs": 2, "batch_size": 32, "progress": False, "l1": l1, "lr_schedule": {"name": "cosine"},
                 "optimizer": {"name": optimizer, "lr": 0.01, "momentum": 0.9}}
    return RunConfig.model_validate({"model": {"hidden": [24, 16], "layer": layer}, "train": train_cfg,
                                     "evolution": evolution})


def _reads_alone(config: RunConfig, n_train: int) -> list[str]:
    data = blob_data(n_train=n_train, n_test=64)
    model = build_run_model(config, data.input_shape, data.num_classes, torch.device("cpu"))
    callbacks, penalties = build_callbacks(config, model), build_penalties(config, model)
    with HostReads() as reads:
        train(model, data, config.train, seed=0, callbacks=callbacks, penalties=penalties)
    return reads.calls


def _reads_stacked(config: RunConfig, n_train: int) -> list[str]:
    data = blob_data(n_train=n_train, n_test=64)
    models = [build_run_model(config, data.input_shape, data.num_classes, torch.device("cpu")) for _ in range(3)]
    with HostReads() as reads:
        train_stacked(models, data, [config.train] * 3, seeds=[0, 1, 2],
                      callbacks=[build_callbacks(config, m) for m in models],
                      penalties=[build_penalties(config, m) for m in models])
    return reads.calls


@pytest.mark.parametrize("optimizer,l1", [("sgd", 1e-4), ("adam", 0.0)])
@pytest.mark.parametrize("runner,case", [pytest.param(runner, case, id=f"{name}-{case}")
                                         for name, runner in (("alone", _reads_alone), ("stacked", _reads_stacked))
                                         for case, (_, _, stacks) in CASES.items() if stacks or name == "alone"])
def test_host_reads_do_not_grow_with_steps(runner, case, optimizer, l1):
    config = _config(case, optimizer, l1)
    few, many = runner(config, n_train=4 * 32), runner(config, n_train=12 * 32)  # 4 and 12 steps per epoch
    assert sorted(few) == sorted(many), f"host reads per step: {sorted(set(many) - set(few)) or many}"


def test_the_counter_sees_a_per_step_read():
    """The check above can fail: a callback that reads weights every step is caught, both ways."""
    from wiringlab.engine import Callback

    class ReadsWeights(Callback):
        def on_step_end(self, state):
            float(next(state.model.parameters()).detach().sum())  # a scalar read
            next(state.model.parameters()).detach()[0].tolist()  # a copy to the host

    config = _config("plain", "sgd", 0.0)

    def reads(n_train):
        data = blob_data(n_train=n_train, n_test=64)
        model = build_run_model(config, data.input_shape, data.num_classes, torch.device("cpu"))
        with HostReads() as counter:
            train(model, data, config.train, seed=0, callbacks=[ReadsWeights()])
        return counter.calls

    extra = Counter(reads(12 * 32)) - Counter(reads(4 * 32))
    assert extra["_local_scalar_dense"] == extra["tolist"] == 2 * 8  # 2 epochs x 8 more steps


@pytest.mark.parametrize("condition", ["spatial_decay", "separate"])
def test_multitask_host_reads_do_not_grow_with_steps(condition):
    from wiringlab.engine.multitask import TaskData, train_multitask
    from wiringlab.experiment.config import MultitaskConfig, TrainConfig
    from wiringlab.experiment.multitask_run import build_multitask_run_model, multitask_callbacks

    tasks_config = {name: {"data": {"name": "synthetic"}, "kernel": {"kernel": "exponential", "schedule": "anneal-out"}}
                    for name in ("images", "signals")}
    config = RunConfig(multitask=MultitaskConfig(condition=condition, tasks=tasks_config, width=16, depth=2))

    def reads(n_train):
        tasks = [TaskData("images", blob_data(n_train=n_train, n_test=64, dim=24, seed=1), 1.0, 32),
                 TaskData("signals", blob_data(n_train=n_train // 3, n_test=32, dim=10, classes=3, seed=2), 0.5, 32)]
        model = build_multitask_run_model(config, tasks, torch.device("cpu"))
        cfg = TrainConfig(epochs=2, batch_size=32, progress=False, optimizer={"name": "adam", "lr": 0.01})
        with HostReads() as counter:
            train_multitask(model, tasks, cfg, seed=0, callbacks=multitask_callbacks(config, model))
        return counter.calls

    few, many = reads(4 * 32), reads(12 * 32)
    assert sorted(few) == sorted(many), f"host reads per step: {many}"
