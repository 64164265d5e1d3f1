"""Checks a sweep makes before anything is written or trained: devices, extras, datasets and
their sizes, and that each distinct model can be built and run on its data's inputs.

Why up front: a sweep records an exception inside a run as a failed run and goes on, which
is right for what only training can reveal (a diverging loss, a full disk) and wrong for
what every run of a config would hit: one clear error before the first epoch beats a folder
of failed runs.
"""

from __future__ import annotations

import torch

from .errors import ConfigError
from .recipe import RunSpec

__all__ = ["check_pending", "check_datasets", "check_csr_kernels", "check_devices", "check_models"]


def check_pending(pending: list[RunSpec], executor) -> None:
    """Everything that can refuse the sweep before anything is written or trained.

    Raises:
        ConfigError, DatasetError, MissingExtraError: see each check.
    """
    if executor.name != "ray":
        check_devices(pending)
    if hasattr(executor, "check"):  # the executor's own refusals (Ray: a GPU index)
        executor.check([[spec] for spec in pending])
    check_csr_kernels(pending)
    check_models(pending, check_datasets(pending))


def check_datasets(specs: list[RunSpec]):
    """Load each distinct dataset once, so a missing one fails the sweep up front
    (with the loader's message on what to install) instead of failing every run; and
    check each run's data.n_train/n_test against it.

    Returns:
        The `execute.DatasetCache` holding them.

    Raises:
        DatasetError: a dataset cannot be found or read. ConfigError: n_train or n_test
            asks for more samples than the dataset has.
    """
    from ..engine.tensors import check_split_sizes
    from .execute import DatasetCache

    datasets = DatasetCache()
    for spec in specs:
        for data in spec.config.data_configs():
            try:
                check_split_sizes(datasets.get(data), data)
            except ValueError as err:
                raise ConfigError(f"{spec.run_id}: {err}") from None
    return datasets


def check_csr_kernels(specs: list[RunSpec]) -> None:
    """`csr_kernel: numba` needs numba and a CPU: check once, before anything runs, instead
    of failing every run.

    Raises:
        MissingExtraError: numba is not installed. ConfigError: a run would train on a GPU.
    """
    from ..sparse_ops import csr_kernels
    from .execute import resolve_device
    from .layer_config import layer_config_nodes

    for spec in specs:
        if not any(node.get("csr_kernel") == "numba" for node in layer_config_nodes(spec.config.model.model_dump())):
            continue
        csr_kernels("numba")
        device = resolve_device(spec.config.train.device)
        if device.type != "cpu":
            raise ConfigError(f"{spec.run_id}: csr_kernel: numba runs on the CPU, but train.device resolves to "
                              f"{device}: set train.device=cpu, or model.layer.csr_kernel=torch (which runs on GPUs)")


def check_devices(specs: list[RunSpec]) -> None:
    """Resolve every run's `train.device` here, once: a device this machine lacks (--device
    cuda without a GPU) is one error before anything runs, not a failed run per spec.
    Only for executors that train on this machine (a Ray cluster's workers have their own).

    Raises:
        ConfigError: a requested device is not available.
    """
    from .execute import resolve_device

    for device in dict.fromkeys(spec.config.train.device for spec in specs):
        try:
            resolve_device(device)
        except RuntimeError as err:
            raise ConfigError(f"train.device: {err}") from None


def check_models(specs: list[RunSpec], datasets) -> None:
    """Build each distinct single-task config's model once on the CPU, with the callbacks and penalties
    its config asks for, and run two of its dataset's inputs through it: a model that does
    not fit its data (a LeNet on 1-D signals, a kernel larger than the image, a snapshot
    layer index it lacks) is one error naming the config, not a failed run per seed.

    Raises:
        ConfigError: building or running the model raised; the message names the config,
            the input shape and torch's error.
    """
    seen = set()
    for spec in specs:
        if spec.config.multitask is not None:  # its own model and data path (multitask_run)
            continue
        dump = spec.config.model_copy(update={"seed": 0, "train": None}).model_dump_json()
        if dump in seen:
            continue
        seen.add(dump)
        dataset = datasets.get(spec.config.data)
        try:
            _run_two_inputs(spec.config, dataset)
        except Exception as err:  # torch's own error, whatever its type, is the message
            raise ConfigError(f"{spec.label}: building this config's model with its callbacks, or running it on "
                              f"{dataset.name!r} inputs of shape {tuple(dataset.input_shape)}, failed: "
                              f"{type(err).__name__}: {err}") from None


@torch.no_grad()
def _run_two_inputs(config, dataset) -> None:
    from .execute import build_callbacks, build_penalties, build_run_model

    model = build_run_model(config, dataset.input_shape, dataset.num_classes, torch.device("cpu"))
    build_callbacks(config, model), build_penalties(config, model)
    x = dataset.x_train[:2].float()
    logits = model.eval()(x)
    if tuple(logits.shape) != (len(x), dataset.num_classes):
        raise ValueError(f"the model gives logits of shape {tuple(logits.shape)}, not (2, {dataset.num_classes})")
