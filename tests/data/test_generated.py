"""Generated datasets: MNIST-1D (cached) and synthetic prototypes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from wiringlab.data import DatasetOptionError, load_dataset
from wiringlab.data import generated


@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory):
    """One real generation (about 2 s) shared by this module's mnist1d tests."""
    folder = tmp_path_factory.mktemp("mnist1d-cache")
    np.random.seed(123)
    random.seed(456)
    np_before, py_before = np.random.get_state(), random.getstate()
    ds = load_dataset("mnist1d", path=folder)
    np_after, py_after = np.random.get_state(), random.getstate()
    same_np = all(np.array_equal(a, b) for a, b in zip(np_before, np_after, strict=True))
    return folder, ds, same_np and py_before == py_after


def test_mnist1d_shapes_and_dtypes(mnist1d_cache):
    _, ds, _ = mnist1d_cache
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.input_shape == (40,) and ds.num_classes == 10
    assert ds.y_train.unique().tolist() == list(range(10))
    assert "Greydanus" in ds.citation


def test_mnist1d_restores_global_rng_state(mnist1d_cache):
    assert mnist1d_cache[2], "mnist1d generation changed the global numpy/random state"


def test_mnist1d_cache_is_npz_and_matches_fresh_generation(mnist1d_cache):
    folder, ds, _ = mnist1d_cache
    cached = list(folder.glob("mnist1d-*.npz"))
    assert len(cached) == 1 and not list(folder.glob(".mnist1d-*"))
    with np.load(cached[0], allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["x"], ds.x_train.numpy())
    again = load_dataset("mnist1d", path=folder)
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)
    fresh = generated.generate_mnist1d(generated.mnist1d_args(42))
    np.testing.assert_array_equal(fresh["x"], ds.x_train.numpy())
    np.testing.assert_array_equal(fresh["y_test"], ds.y_test.numpy())


def test_mnist1d_cache_key_depends_on_seed(tmp_path):
    assert generated._cache_file(tmp_path, generated.mnist1d_args(1)) != generated._cache_file(
        tmp_path, generated.mnist1d_args(2)
    )


def test_mnist1d_regenerates_over_a_corrupt_cache(tmp_path, monkeypatch):
    fake = {
        "x": np.ones((8, 40), np.float32),
        "y": np.arange(8) % 10,
        "x_test": np.zeros((2, 40), np.float32),
        "y_test": np.array([0, 1]),
    }
    monkeypatch.setattr(generated, "generate_mnist1d", lambda args: fake)
    generated._cache_file(tmp_path, generated.mnist1d_args(7)).write_bytes(b"not a zip file")
    ds = load_dataset("mnist1d", path=tmp_path, seed=7)
    assert ds.x_train.shape == (8, 40)
    assert load_dataset("mnist1d", path=tmp_path, seed=7).y_train.tolist() == fake["y"].tolist()


def test_mnist1d_default_cache_is_the_user_cache(monkeypatch, isolated_data_env):
    fake = {
        "x": np.zeros((4, 40), np.float32),
        "y": np.arange(4),
        "x_test": np.zeros((1, 40), np.float32),
        "y_test": np.array([3]),
    }
    monkeypatch.setattr(generated, "generate_mnist1d", lambda args: fake)
    load_dataset("mnist1d")
    assert len(list((isolated_data_env.cache / "mnist1d").glob("mnist1d-*.npz"))) == 1


def test_synthetic_defaults():
    ds = load_dataset("synthetic")
    assert ds.x_train.shape == (2048, 1, 28, 28) and ds.x_test.shape == (512, 1, 28, 28)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert ds.num_classes == 10 and ds.source == "generated"


def test_synthetic_features_are_float():
    ds = load_dataset("synthetic", input_shape=[40], n_train=30, n_test=7, num_classes=3, seed=5, noise=0.5)
    assert ds.x_train.shape == (30, 40) and ds.x_test.shape == (7, 40)
    assert ds.x_train.dtype == torch.float32 and ds.input_shape == (40,)
    assert ds.classes == ("0", "1", "2") and int(ds.y_train.max()) <= 2


def test_synthetic_is_deterministic_per_seed():
    a = load_dataset("synthetic", n_train=64, n_test=16, seed=3)
    b = load_dataset("synthetic", n_train=64, n_test=16, seed=3)
    c = load_dataset("synthetic", n_train=64, n_test=16, seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)


def test_synthetic_is_learnable_by_nearest_class_mean():
    ds = load_dataset("synthetic", input_shape=(20,), n_train=500, n_test=200, noise=1.0)
    means = torch.stack([ds.x_train[ds.y_train == k].mean(0) for k in range(10)])
    predicted = torch.cdist(ds.x_test, means).argmin(1)
    assert (predicted == ds.y_test).float().mean() > 0.5


@pytest.mark.parametrize(
    "options",
    [
        {"n_train": 0},
        {"num_classes": 1},
        {"input_shape": (1, 2, 3, 4)},
        {"input_shape": (0, 5)},
        {"noise": -1.0},
        {"seed": "x"},
        {"n_test": True},
    ],
)
def test_synthetic_rejects_bad_options(options):
    with pytest.raises(DatasetOptionError):
        load_dataset("synthetic", **options)
