"""Small builders shared by tests."""

import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import needs

from wiringlab.engine import DeviceData

# The numba extra: installed by scripts/setup.sh (so in CI); its tests skip only where it is not.
needs_numba = needs("numba", importlib.util.find_spec("numba") is not None, "numba extra not installed")
# Both CSR kernel sets, for parametrising tests of CSR layers.
CSR_KERNELS = ["torch", pytest.param("numba", marks=needs_numba)]


def blob_data(n_train=512, n_test=256, dim=20, classes=4, seed=0, noise=0.6) -> DeviceData:
    """Gaussian blobs around random class centres: learnable by a small MLP in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 1.5

    def draw(n):
        y = torch.randint(0, classes, (n,), generator=g)
        return centres[y] + noise * torch.randn(n, dim, generator=g), y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return DeviceData(x_train, y_train, x_test, y_test, (dim,), classes)


def assert_same_as_linear(plain, layer, x) -> None:
    """`layer` computes exactly what `plain` (an nn.Linear) does: outputs and the
    gradients of weight and bias are bitwise equal."""
    y_plain, y_layer = plain(x), layer(x)
    assert torch.equal(y_plain, y_layer)
    y_plain.square().sum().backward()
    y_layer.square().sum().backward()
    assert torch.equal(plain.weight.grad, layer.weight.grad) and torch.equal(plain.bias.grad, layer.bias.grad)


def run_recipe(folder: Path, text: str, *options: str) -> tuple[Path, Path]:
    """Write `text` as folder/recipe.yaml and `wiringlab run` it into folder/out with
    `options`; the run must succeed. Returns (recipe path, results folder)."""
    from wiringlab.cli import main

    recipe, out = Path(folder) / "recipe.yaml", Path(folder) / "out"
    recipe.write_text(text)
    assert main(["run", str(recipe), "--out", str(out), *options]) == 0
    return recipe, out
