"""Datasets made in code: MNIST-1D (cached as .npz) and seeded synthetic prototypes."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import Dataset
from .errors import DatasetOptionError
from .spec import LoadContext

__all__ = ["load_mnist1d", "load_synthetic", "mnist1d_args", "generate_mnist1d"]

logger = logging.getLogger(__name__)

_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DatasetOptionError(f"option {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def mnist1d_args(seed: int) -> dict[str, Any]:
    """Return mnist1d's default generation arguments with ``seed`` set (the URL dropped).

    Args:
        seed: Generation seed.

    Returns:
        The arguments as a plain dict.
    """
    from mnist1d.data import get_dataset_args  # noqa: PLC0415 - optional heavy import

    args = dict(get_dataset_args(as_dict=True))
    args.pop("url", None)
    args["seed"] = seed
    return args


def generate_mnist1d(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """Generate MNIST-1D, leaving the global ``random`` and numpy RNG states as they were.

    Args:
        args: Generation arguments (see :func:`mnist1d_args`).

    Returns:
        ``x`` float32 (4000, 40), ``y`` int64, ``x_test``, ``y_test`` for the default args.
    """
    from mnist1d.data import ObjectView, make_dataset  # noqa: PLC0415

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x": np.asarray(data["x"], dtype=np.float32),
        "y": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def _cache_file(cache_dir: Path, args: dict[str, Any]) -> Path:
    key = json.dumps({"args": args, "mnist1d": metadata.version("mnist1d")}, sort_keys=True)
    return cache_dir / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in _MNIST1D_KEYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        logger.warning("ignoring unreadable mnist1d cache %s (%s); regenerating", path, exc)
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".mnist1d-", suffix=".npz", delete=False) as tmp:
            tmp_name = tmp.name
            np.savez(tmp, **arrays)
        os.replace(tmp_name, path)
    except OSError as exc:  # a read-only cache only costs time
        logger.warning("could not cache mnist1d at %s (%s)", path, exc)
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)


def load_mnist1d(ctx: LoadContext) -> Dataset:
    """Generate (or read from the cache) MNIST-1D: 4000 train / 1000 test, 40 float features, 10 classes.

    Never downloads: the arrays are generated with ``mnist1d.data.make_dataset`` and cached
    in ``ctx.cache_dir`` as ``.npz`` keyed by the generation arguments.

    Args:
        ctx: Option ``seed`` (default 42, mnist1d's own).

    Returns:
        The dataset.

    Raises:
        DatasetOptionError: A bad seed.
    """
    args = mnist1d_args(_check_int("seed", ctx.options["seed"], 0))
    path = _cache_file(ctx.cache_dir, args)
    arrays = _read_cache(path)
    if arrays is None:
        logger.info("generating mnist1d (seed %d)", args["seed"])
        arrays = generate_mnist1d(args)
        _write_cache(path, arrays)
    return Dataset(
        name=ctx.spec.name,
        x_train=torch.from_numpy(arrays["x"]),
        y_train=torch.from_numpy(arrays["y"]),
        x_test=torch.from_numpy(arrays["x_test"]),
        y_test=torch.from_numpy(arrays["y_test"]),
        input_shape=tuple(arrays["x"].shape[1:]),
        classes=ctx.spec.classes,
        citation=ctx.spec.citation,
        source=f"generated (cache {path})",
    )


def _synthetic_options(options: dict[str, Any]) -> dict[str, Any]:
    shape = options["input_shape"]
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape or len(shape) > 3:
        raise DatasetOptionError(f"option input_shape must be 1 to 3 positive integers, got {shape!r}")
    noise = options["noise"]
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise DatasetOptionError(f"option noise must be a finite number >= 0, got {noise!r}")
    return {
        "n_train": _check_int("n_train", options["n_train"], 1),
        "n_test": _check_int("n_test", options["n_test"], 1),
        "num_classes": _check_int("num_classes", options["num_classes"], 2),
        "seed": _check_int("seed", options["seed"], 0),
        "input_shape": tuple(_check_int("input_shape", s, 1) for s in shape),
        "noise": float(noise),
    }


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (128.0 + 32.0 * x).round().clamp(0, 255).to(torch.uint8)


def load_synthetic(ctx: LoadContext) -> Dataset:
    """Generate a learnable, seeded classification problem: class prototypes plus Gaussian noise.

    Prototypes are standard normal per feature; a sample is its class prototype plus
    ``noise`` times standard normal noise, divided by ``sqrt(1 + noise**2)`` so features
    have unit variance whatever the noise. With a 3-dim ``input_shape`` the values are
    mapped to ``uint8`` images (``128 + 32 x``, clamped); otherwise they stay float32.
    Difficulty grows with ``noise`` and falls with the number of features: at the default
    noise 4 a linear model is near perfect on 784 features and far above chance on 40.

    Args:
        ctx: Options ``n_train``, ``n_test``, ``input_shape``, ``num_classes``, ``seed``, ``noise``.

    Returns:
        The dataset; identical for identical options.

    Raises:
        DatasetOptionError: Invalid option values.
    """
    opts = _synthetic_options(dict(ctx.options))
    shape, classes = opts["input_shape"], opts["num_classes"]
    generator = torch.Generator().manual_seed(opts["seed"])
    prototypes = torch.randn(classes, math.prod(shape), generator=generator)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(classes, (n,), generator=generator)
        x = prototypes[y] + opts["noise"] * torch.randn(n, prototypes.shape[1], generator=generator)
        x = (x / math.sqrt(1.0 + opts["noise"] ** 2)).reshape(n, *shape)
        return (_to_uint8(x) if len(shape) == 3 else x.float()), y

    x_train, y_train = sample(opts["n_train"])
    x_test, y_test = sample(opts["n_test"])
    return Dataset(
        name=ctx.spec.name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        input_shape=shape,
        classes=tuple(str(i) for i in range(classes)),
        citation=ctx.spec.citation,
        source="generated",
    )
