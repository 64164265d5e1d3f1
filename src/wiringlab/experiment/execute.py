"""Execute one run: dataset → model → training → run folder.

This is the only place where a `RunConfig` meets the engine. Extensions hook in at
`build_callbacks` and `build_penalties` (kernel schedules, SET evolution, snapshots,
decay-to-kernel), each a function of the config and the model.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from pathlib import Path

import torch

from ..data import load_dataset
from ..engine import to_device_data, train
from ..init import init_parameters_
from ..layers import effective_weight
from ..models import build_model, linear_layers, named_weight_layers
from ..seeding import make_generator
from .errors import ConfigError
from .layer_config import layer_config_nodes
from .locality_hooks import locality_penalties
from .provenance import provenance
from .recipe import RunSpec
from .spatial_hooks import spatial_callbacks, spatial_penalties
from .store import RunFolder

__all__ = ["execute_run", "finish_run", "fail_run", "failed_summary", "epoch_consumer", "resolve_device",
           "build_callbacks", "build_penalties", "build_run_model", "DatasetCache"]

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """"auto" → cuda if available, else cpu. An unavailable explicit device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise RuntimeError(f"device {name!r} requested but {count} GPU(s) are visible (cuda:0 to cuda:{count - 1}); "
                           "use --device cuda, auto, or a visible index")
    return device


class DatasetCache:
    """Loaded datasets of one sweep, so its runs do not reload the same files."""

    def __init__(self) -> None:
        self._cache: dict[str, object] = {}

    def get(self, data_cfg):
        key = repr((data_cfg.name, data_cfg.path, sorted(data_cfg.options.items())))
        if key not in self._cache:
            self._cache[key] = load_dataset(data_cfg.name, path=data_cfg.path, **data_cfg.options)
        return self._cache[key]


def build_run_model(config, input_shape, num_classes, device, *, dense: bool = False) -> torch.nn.Module:
    """The model of `config`, initialised from the run's "init" generator.

    With `dense`, sparse layers are built masked dense whatever their `csr_threshold`
    (the same numbers; analyses that permute or edit weight rows need that layout).
    Saved weights load into either layout."""
    model_config = _masked_dense(config.model) if dense else config.model
    model = build_model(model_config, input_shape, num_classes, device=device)
    return init_parameters_(model, make_generator(config.seed, "init", device))


def _masked_dense(model_config):
    tree = model_config.model_dump()
    for node in layer_config_nodes(tree):
        if node["type"] == "sparse":
            node["csr_threshold"] = None
    return type(model_config).model_validate(tree)


def build_callbacks(config, model) -> list:
    """Callbacks the config asks for (schedules, evolution, snapshots).

    SET: `config.evolution` adds a `SETCallback` over the model's sparse layers; any
    model with sparse layers gets a `TopologyLogger` after it (connection counts per
    input unit each epoch, in topology.safetensors, and topology metrics).
    """
    from ..engine.evolution import SETCallback, sparse_layers
    from ..engine.topology_log import TopologyLogger
    from ..layers.sparse import SparseLinear

    callbacks = [*spatial_callbacks(config, model)]
    if config.evolution is not None:
        evolving = sparse_layers(model)
        _check_gradient_regrowth_eager(config, evolving)
        callbacks.append(SETCallback(evolving, config.evolution))
    named_sparse = [(f"linear{i}", layer) for i, layer in enumerate(linear_layers(model))
                    if isinstance(layer, SparseLinear)]
    if named_sparse:
        callbacks.append(TopologyLogger(named_sparse))
    return [*callbacks, *_snapshot_callbacks(config, model)]  # snapshots see the final state


def _check_gradient_regrowth_eager(config, layers) -> None:
    """`regrow: gradient` reads a masked-dense layer's dense gradient through forward hooks added
    at an epoch's last step; torch.compile skips hooks added after it compiled the model, so the
    gradient would never arrive (a CSR layer's product runs outside the compiled graph: it works)."""
    from ..layers.sparse_csr import CSRSparseLinear

    masked = [layer for layer in layers if not isinstance(layer, CSRSparseLinear)]
    if config.evolution.regrow == "gradient" and config.train.compile != "off" and masked:
        raise ConfigError(f"evolution.regrow=gradient with train.compile={config.train.compile}: the dense gradient "
                          f"of {len(masked)} masked-dense sparse layer(s) is read through hooks that torch.compile "
                          "skips; set train.compile=off, or store those layers in CSR (model.layer.csr_threshold at "
                          "or below their sparsity)")


def _snapshot_callbacks(config, model) -> list:
    if config.snapshots is None:
        return []
    from ..engine.snapshots import SnapshotCallback, snapshot_layers

    snapshot_layers(model, config.snapshots.layers)  # a bad index fails here, before training
    return [SnapshotCallback(config.snapshots.layers, config.snapshots.epochs)]


def build_penalties(config, model) -> list:
    """Loss terms the config asks for beyond L1 (which the engine handles)."""
    return [*spatial_penalties(config, model), *locality_penalties(config, model)]


@torch.no_grad()
def effective_weights(model) -> dict[str, torch.Tensor]:
    """{"conv0": W_eff, …, "linear0": W_eff, …}: what each convolution and linear layer
    computes with (`models.named_weight_layers`). Analyses across runs read these without
    rebuilding the models."""
    return {name: effective_weight(layer) for name, layer in named_weight_layers(model)}


def _summary(spec: RunSpec, result, device, wall: float) -> dict:
    final = result.final
    best = max((r["test_acc"] for r in result.history if r.get("test_acc") == r.get("test_acc")), default=None)
    return {
        "run_id": spec.run_id, "label": spec.label, "seed": spec.seed, "axes": spec.axes,
        "status": result.status, "epochs": len(result.history),
        "final": {k: v for k, v in final.items() if k not in ("epoch", "time_s")},
        "best_test_acc": best, "wall_time_s": wall, "provenance": provenance(device, spec.config.train),
    }


@contextlib.contextmanager
def epoch_consumer(config, folder: RunFolder):
    """The `on_epoch` of a run: append to metrics.jsonl, plus TensorBoard scalars when
    the config asks for them (`train.tensorboard`); closes the TensorBoard writer on exit."""
    if not config.train.tensorboard:
        yield folder.append_metrics
        return
    from .tensorboard import TensorBoardLogger

    board = TensorBoardLogger(folder.path / "tensorboard")

    def on_epoch(record: dict) -> None:
        folder.append_metrics(record)
        board(record)

    try:
        yield on_epoch
    finally:
        board.close()


def finish_run(spec: RunSpec, folder: RunFolder, model, result, device, wall: float, stack_size: int = 1,
               data_source: str | None = None) -> dict:
    """Write a trained run's weights and summary; return the summary. `stack_size`: how
    many members trained together with this run (1: alone), and `data_source`, the folders
    its dataset was read from (`Dataset.source`), are kept in the provenance."""
    if spec.config.save_weights:
        folder.write_weights(model.state_dict())
        folder.write_weights(effective_weights(model), "effective_weights.safetensors")
    summary = _summary(spec, result, device, wall)
    summary["provenance"]["stack_size"] = stack_size
    summary["provenance"]["train_step"] = result.train_step
    if data_source is not None:
        summary["provenance"]["data_source"] = data_source
    folder.write_summary(summary)
    return summary


def failed_summary(spec: RunSpec, error: str, traceback_text: str, wall_time_s: float,
                   device: torch.device | None = None) -> dict:
    """The summary.json of a run that raised (status "failed": a resumed sweep runs it again)."""
    return {"run_id": spec.run_id, "label": spec.label, "seed": spec.seed, "axes": spec.axes,
            "status": "failed", "error": error, "traceback": traceback_text, "wall_time_s": wall_time_s,
            "provenance": provenance(device or torch.device("cpu"))}


def fail_run(spec: RunSpec, folder: RunFolder, err: Exception, device, wall: float) -> dict:
    """Record a run that raised as status "failed" (retried on the next invocation)."""
    log.error("run %s failed: %s", spec.run_id, err)
    summary = failed_summary(spec, f"{type(err).__name__}: {err}", traceback.format_exc(), wall, device)
    folder.write_summary(summary)
    return summary


def execute_run(spec: RunSpec, out_dir: Path, datasets: DatasetCache | None = None) -> dict:
    """Train `spec` and write its run folder under `out_dir/runs/`. Returns the summary.

    An exception inside the run is caught and recorded as status "failed" (with the
    traceback in summary.json), so one broken config never stops a sweep. A config with
    a ``multitask`` section is trained by `multitask_run.execute_multitask_run`.
    """
    if spec.config.multitask is not None:
        from .multitask_run import execute_multitask_run

        return execute_multitask_run(spec, out_dir, datasets or DatasetCache())
    folder = RunFolder(Path(out_dir) / "runs" / spec.run_id)
    folder.start(spec.config.model_dump(mode="json"))
    start = time.perf_counter()
    device = torch.device("cpu")
    try:
        device = resolve_device(spec.config.train.device)
        dataset = (datasets or DatasetCache()).get(spec.config.data)
        data = to_device_data(dataset, spec.config.data, device)
        model = build_run_model(spec.config, data.input_shape, data.num_classes, device)
        with epoch_consumer(spec.config, folder) as on_epoch:
            result = train(
                model, data, spec.config.train, seed=spec.seed,
                callbacks=build_callbacks(spec.config, model), penalties=build_penalties(spec.config, model),
                on_epoch=on_epoch, run_dir=folder.path, description=spec.run_id,
            )
        return finish_run(spec, folder, model, result, device, time.perf_counter() - start,
                          data_source=dataset.source)
    except Exception as err:  # recorded, not raised: the sweep goes on
        return fail_run(spec, folder, err, device, time.perf_counter() - start)
