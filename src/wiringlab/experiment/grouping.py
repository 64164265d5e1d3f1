"""Stack compatible runs of a sweep and train each stack as one model.

Runs stack when their configs agree on everything but per-member values (seed,
optimizer hyperparameters, L1, kernel parameters and schedules, mask density, SET's
evolution values; `MEMBER_VALUE_KEYS`) and their built models have the same structure
(see `engine.stacking`). A group that turns out not to be stackable runs member by member,
with the reason logged; so does, on a CPU, a group of fewer than 8 plain ReLU MLPs, which the
fused MLP step trains faster one at a time (`_fused_alone_is_faster`). Each member still gets
its own run folder and summary. A stack that raises is trained again run by run, so one
member's fault (its callback, its files) fails that run only, not its neighbours on every
resume; a member whose results cannot be saved is recorded as failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import torch

from ..engine import to_device_data
from ..engine.fused_mlp import fused_mlp_layers, fused_step_blocker
from ..engine.stacked import stack_compatible, train_stacked
from ..engine.stacking import stackable, structure_signature
from .execute import (DatasetCache, build_callbacks, build_penalties, build_run_model, epoch_consumer, execute_run,
                      fail_run, finish_run, resolve_device)
from .recipe import RunSpec
from .store import RunFolder

__all__ = ["group_runs", "spread_groups", "execute_group", "MEMBER_VALUE_KEYS"]

log = logging.getLogger(__name__)

# Config keys whose values may differ inside one stack (each member carries its own:
# optimizer values in StackedOptimizer, kernels and masks in its buffers, schedules and
# SET evolution in its callbacks, penalties per member). A key listed here that does
# change the model's structure is still caught: `_why_not` compares the built models.
_LAYER_VALUE_KEYS = ["kernel", "k", "floor", "sigma", "schedule", "decay", "decay_target", "density", "epsilon"]
MEMBER_VALUE_KEYS = [
    "seed", "save_weights", "train.progress", "train.l1",
    "train.optimizer.lr", "train.optimizer.weight_decay", "train.optimizer.momentum",
    "train.optimizer.nesterov", "train.optimizer.betas", "train.optimizer.eps", "train.optimizer.alpha",
    *(f"model.{layer}.{key}" for layer in ("layer", "output_layer") for key in _LAYER_VALUE_KEYS),
    "evolution.zeta", "evolution.zeta_schedule", "evolution.interval", "evolution.prune",
    "evolution.regrow_init", "evolution.regrow_scale",
]


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.get(part, {})
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)


def stack_key(spec: RunSpec) -> str:
    """What must be equal for two runs to share a stack."""
    tree = spec.config.model_dump(mode="json")
    for key in MEMBER_VALUE_KEYS:
        _drop(tree, key)
    return json.dumps(tree, sort_keys=True)


def group_runs(specs: list[RunSpec], max_members: int = 16) -> list[list[RunSpec]]:
    """Specs grouped by `stack_key`, in first-seen order, at most `max_members` a group."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:  # multi-task runs have their own loop: never stacked
        key = stack_key(spec) if spec.config.multitask is None else f"multitask:{spec.run_id}"
        groups.setdefault(key, []).append(spec)
    return [g[i : i + max_members] for g in groups.values() for i in range(0, len(g), max_members)]


def spread_groups(groups: list[list[RunSpec]], workers: int) -> list[list[RunSpec]]:
    """Split the largest groups in halves until there are at least `workers` groups (or
    every group is a single run), so that a process pool has work for each process.

    Evidence (`bench/throughput.py`, 2-core CPU, 784-1000-1000-10 MLP): one model runs at
    ~71% of the one-thread matmul peak on one thread but ~55% of the two-thread peak on
    two, and stacking does not change that on a CPU; so two one-thread processes beat
    one two-thread stack."""
    groups = [list(g) for g in groups]
    while len(groups) < workers and max(map(len, groups), default=1) > 1:
        largest = max(range(len(groups)), key=lambda i: len(groups[i]))
        group = groups.pop(largest)
        half = (len(group) + 1) // 2
        groups[largest:largest] = [group[:half], group[half:]]
    return groups


# On a CPU, groups of fused-step runs smaller than this train one at a time (see below).
FUSED_STACK_MIN_MEMBERS = 8


def _fused_alone_is_faster(models, specs, device: torch.device) -> bool:
    """On a CPU, a small group of runs that the fused MLP step can train (`engine.fused_mlp`)
    trains faster one at a time than as a stack. Evidence (`python bench/stacked.py`, 2-core
    CPU, 784-1000-1000-10, one epoch, session 7): SGD momentum, 3 stacked members take 1.24–1.28
    × 3 single fused epochs, 8 take 0.99–1.02 × 8; Adam 1.27 × 3 and 0.96 × 8. From 8 members
    the stack is even or ahead, and on a GPU (small models are launch-bound) it wins."""
    if device.type != "cpu" or len(specs) >= FUSED_STACK_MIN_MEMBERS:
        return False
    if isinstance(fused_mlp_layers(models[0]), str):
        return False
    return all(fused_step_blocker(s.config.train) is None and s.config.evolution is None for s in specs)


def _why_not(models, specs, device: torch.device) -> str | None:
    if _fused_alone_is_faster(models, specs, device):
        return (f"on a CPU, fewer than {FUSED_STACK_MIN_MEMBERS} plain ReLU MLPs train faster one at a time with "
                "the fused MLP step than as a stack")
    evolution = specs[0].config.evolution
    if evolution is not None and evolution.regrow == "gradient":  # same for the whole group (stack_key)
        return "SET regrow=gradient captures dense gradients with module hooks, which a vmapped stack never calls"
    reason = stackable(models[0]) or stack_compatible([s.config.train for s in specs])
    if reason is None and len({structure_signature(m) for m in models}) > 1:
        reason = "models differ in structure"
    return reason


def execute_group(specs: list[RunSpec], out_dir: Path, datasets: DatasetCache | None = None) -> list[dict]:
    """Train `specs` as one stack when possible, else one by one. Returns the summaries."""
    datasets = datasets or DatasetCache()
    if len(specs) == 1 or any(s.config.multitask is not None for s in specs):
        return [execute_run(s, out_dir, datasets) for s in specs]
    folders = [RunFolder(Path(out_dir) / "runs" / s.run_id) for s in specs]
    start, device = time.perf_counter(), torch.device("cpu")
    try:
        device = resolve_device(specs[0].config.train.device)
        dataset = datasets.get(specs[0].config.data)
        data = to_device_data(dataset, specs[0].config.data, device)
        models = [build_run_model(s.config, data.input_shape, data.num_classes, device) for s in specs]
        reason = _why_not(models, specs, device)
    except Exception as err:  # let each run record its own failure
        reason = f"{type(err).__name__}: {err}"
    if reason:
        log.info("running %d runs one by one: %s", len(specs), reason)
        return [execute_run(s, out_dir, datasets) for s in specs]
    for spec, folder in zip(specs, folders):
        folder.start(spec.config.model_dump(mode="json"))
    try:
        with contextlib.ExitStack() as consumers:
            on_epoch = [consumers.enter_context(epoch_consumer(s.config, f)) for s, f in zip(specs, folders)]
            results = train_stacked(
                models, data, [s.config.train for s in specs], seeds=[s.seed for s in specs],
                callbacks=[build_callbacks(s.config, m) for s, m in zip(specs, models)],
                penalties=[build_penalties(s.config, m) for s, m in zip(specs, models)],
                on_epoch=on_epoch, run_dirs=[f.path for f in folders],
            )
    except Exception as err:  # maybe one member's fault: alone, each run fails or finishes on its own
        log.warning("the stack of %d runs (%s, ...) failed (%s: %s); training them one by one", len(specs),
                    specs[0].run_id, type(err).__name__, err)
        return [execute_run(s, out_dir, datasets) for s in specs]
    wall = time.perf_counter() - start
    return [_finish_member(s, f, m, r, device, wall / len(specs), len(specs), dataset.source)
            for s, f, m, r in zip(specs, folders, models, results)]


def _finish_member(spec: RunSpec, folder: RunFolder, model, result, device, wall: float, stack_size: int,
                   data_source: str | None) -> dict:
    """`finish_run` for one member; a failure to save it is that run's, recorded as failed."""
    try:
        return finish_run(spec, folder, model, result, device, wall, stack_size=stack_size, data_source=data_source)
    except Exception as err:
        return fail_run(spec, folder, err, device, wall)
